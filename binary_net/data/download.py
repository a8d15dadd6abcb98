"""Downloading the datasets' official files: resumable, checksum-verified, atomic.

The fetching side of :mod:`binary_net.data` (``python -m binary_net download
NAME``). Each file goes to ``FILE.part``, a partial one resumes with an HTTP Range
request, the MD5 sum of the registry (:data:`binary_net.data.DATASETS`) is checked
and only then is the file renamed into place; Ctrl-C keeps the ``.part``. The
CIFAR-10 archive is unpacked through a staging directory; MNIST's ``.gz`` files get
their uncompressed copies beside them, as pylearn2 reads only those.
yann.lecun.com often refuses downloads; ``--base-url
https://ossci-datasets.s3.amazonaws.com/mnist/`` is a mirror of the same MNIST
files. For MNIST and Fashion-MNIST the MD5 is that of the *uncompressed* IDX data,
because mirrors re-gzip the files with different headers.
"""
import gzip
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib

from .cifar10 import CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES
from .files import DatasetError, DownloadInterrupted, data_root, describe
from .registry import DATASETS, check_name

_CHUNK_SIZE = 1 << 16
_TIMEOUT_S = 60
_USER_AGENT = 'binary_net-datasets/1.0 (python urllib)'


def _say(message, verbose):
    if verbose:
        print(message, file=sys.stderr)


def _content_md5(path, md5_of):
    """MD5 of a file or of its gunzipped content; None if it does not decompress."""
    digest = hashlib.md5(usedforsecurity=False)
    opener = gzip.open if md5_of == 'gunzipped' else open
    try:
        with opener(path, 'rb') as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b''):
                digest.update(chunk)
    except (gzip.BadGzipFile, EOFError, zlib.error):
        return None
    return digest.hexdigest()


def _checksum_problem(path, md5, md5_of):
    """None if ``path`` matches ``md5`` (or no sum is known), else what is wrong."""
    if md5 is None:
        return None
    found = _content_md5(path, md5_of)
    if found is None:
        return 'it is not a valid gzip file'
    if found != md5.lower():
        what = 'uncompressed content' if md5_of == 'gunzipped' else 'file'
        return 'MD5 of the %s is %s, expected %s' % (what, found, md5.lower())
    return None


def _resume_offset(response):
    """Start offset of a 206 response's Content-Range, or None if unparsable."""
    content_range = response.headers.get('Content-Range', '')
    try:
        unit, rest = content_range.split(' ', 1)
        return int(rest.split('-', 1)[0]) if unit == 'bytes' else None
    except ValueError:
        return None


def _open_url(url, offset):
    """Open ``url`` asking for bytes from ``offset`` on; None if nothing is left to get."""
    request = urllib.request.Request(url, headers={'User-Agent': _USER_AGENT})
    if offset:
        request.add_header('Range', 'bytes=%d-' % offset)
    try:
        return urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            # Range not satisfiable: the partial file already holds every byte.
            return None
        raise DatasetError('download of %s failed: HTTP %d %s' % (url, err.code, err.reason)) from None
    except (urllib.error.URLError, OSError) as err:
        reason = ' '.join(str(getattr(err, 'reason', err)).split())
        raise DatasetError('download of %s failed: %s (try a mirror with --base-url)' % (url, reason)) from None


def _download_to_part(url, part_path, verbose):
    """Fetch ``url`` into ``part_path``, continuing a partial file if the server allows."""
    offset = os.path.getsize(part_path) if os.path.isfile(part_path) else 0
    response = _open_url(url, offset)
    if response is None:
        return
    with response:
        if offset and (response.status != 206 or _resume_offset(response) != offset):
            # The server ignored the Range header (200) or answered another range:
            # the body starts elsewhere, so restart the file from scratch.
            if response.status == 206:
                response.close()
                os.remove(part_path)
                return _download_to_part(url, part_path, verbose)
            offset = 0
        length = response.headers.get('Content-Length')
        total = offset + int(length) if length and length.isdigit() else None
        received = offset
        from tqdm import tqdm  # only downloads need it

        with open(part_path, 'ab' if offset else 'wb') as out, \
                tqdm(total=total, initial=offset, unit='B', unit_scale=True, unit_divisor=1024,
                     desc=os.path.basename(part_path)[:-len('.part')], disable=not verbose) as bar:
            try:
                for chunk in iter(lambda: response.read(_CHUNK_SIZE), b''):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:
                raise DatasetError('download of %s was interrupted (%s); run the same command again '
                                   'to resume' % (url, describe(err))) from None
            except KeyboardInterrupt:
                raise DownloadInterrupted('download of %s stopped at byte %d; %s is kept: run the '
                                          'same command again to resume' % (url, received, part_path)) from None
    if total is not None and received < total:
        raise DatasetError('download of %s stopped at %d of %d bytes; run the same command again '
                           'to resume' % (url, received, total))


def _fetch(url, destination, md5, md5_of, verbose):
    """Download ``url`` to ``destination`` through ``destination.part``, verified."""
    part_path = destination + '.part'
    if os.path.isfile(part_path):
        _say('resuming %s from byte %d' % (url, os.path.getsize(part_path)), verbose)
    _download_to_part(url, part_path, verbose)
    problem = _checksum_problem(part_path, md5, md5_of)
    if problem:
        os.remove(part_path)  # a bad file must not be resumed from
        raise DatasetError('download of %s is corrupt: %s; the partial file was deleted' % (url, problem))
    os.replace(part_path, destination)  # atomic: the final name never holds a partial file


def _already_present(destination, remote):
    """True if a verified copy of ``remote`` is already in place (raw IDX counts too)."""
    candidates = [destination]
    if remote.md5_of == 'gunzipped':
        candidates.insert(0, destination[:-len('.gz')])  # the uncompressed pylearn2 copy
    for candidate in candidates:
        if os.path.isfile(candidate):
            md5_of = 'file' if candidate != destination else remote.md5_of
            if _checksum_problem(candidate, remote.md5, md5_of) is None:
                return True
    return False


def _cifar_batches_present(cifar_dir):
    batch_dir = os.path.join(cifar_dir, 'cifar-10-batches-py')
    return all(os.path.isfile(os.path.join(batch_dir, name))
               for name in CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,))


def _extract_cifar(archive, cifar_dir):
    """Unpack cifar-10-batches-py/ from the archive, into place only once complete."""
    staging = tempfile.mkdtemp(prefix='.extract-', dir=cifar_dir)
    try:
        staged_batches = os.path.join(staging, 'cifar-10-batches-py')
        os.mkdir(staged_batches)
        try:
            with tarfile.open(archive, 'r:gz') as tar:
                for member in tar:
                    parts = member.name.split('/')
                    # Take only plain files directly under cifar-10-batches-py/, so
                    # that no archive member can write outside the staging directory.
                    if not member.isfile() or len(parts) != 2 or parts[0] != 'cifar-10-batches-py' \
                            or parts[1] in ('', '.', '..'):
                        continue
                    with tar.extractfile(member) as source, \
                            open(os.path.join(staged_batches, parts[1]), 'wb') as target:
                        shutil.copyfileobj(source, target)
        except (tarfile.TarError, EOFError, zlib.error) as err:
            raise DatasetError('%s is not a valid CIFAR-10 archive (%s)' % (archive, describe(err))) from None
        if not _cifar_batches_present(staging):
            raise DatasetError('%s lacks some of the CIFAR-10 batches' % archive)
        final = os.path.join(cifar_dir, 'cifar-10-batches-py')
        if os.path.isdir(final):
            shutil.rmtree(final)  # an incomplete earlier copy; the checks above found it lacking
        os.replace(staged_batches, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(name, data_path=None, base_url=None, checksums=None, extra=False, progress=True):
    """Download a dataset's official files into the pylearn2 layout.

    Files already present with the right checksum are skipped; a ``FILE.part`` left by
    an interrupted run is resumed with an HTTP Range request.

    Parameters
    ----------
    name : {'mnist', 'fashion-mnist', 'cifar10', 'svhn'}
        The dataset to fetch (a key of :data:`~binary_net.data.registry.DATASETS`).
    data_path : str or None
        Data root; see :func:`~binary_net.data.files.data_root`.
    base_url : str or None
        Directory URL that holds the files (a mirror); default the official site.
    checksums : dict or None
        ``{file name: md5 hex or None}`` overriding the built-in sums; for MNIST and
        Fashion-MNIST the sum is of the uncompressed content. None skips the check.
    extra : bool
        SVHN only: also fetch ``extra_32x32.mat`` (1.3 GB).
    progress : bool
        Show progress bars and messages on stderr.

    Returns
    -------
    list of str
        Paths of the dataset's files (for CIFAR-10, the batch directory).

    Raises
    ------
    DatasetError
        Network failure, an interrupted transfer (the ``.part`` file is kept for
        resuming), or a checksum mismatch (the ``.part`` file is deleted).
    """
    check_name(name)
    spec = DATASETS[name]
    checksums = checksums or {}
    base_url = (base_url or spec.base_url).rstrip('/') + '/'
    target_dir = os.path.join(data_root(data_path), spec.subdir)
    os.makedirs(target_dir, exist_ok=True)
    if name == 'cifar10' and _cifar_batches_present(target_dir):
        _say('CIFAR-10 already present in %s' % target_dir, progress)
        return [os.path.join(target_dir, 'cifar-10-batches-py')]

    paths = []
    for remote in spec.files + (spec.extra_files if extra else ()):
        remote = remote._replace(md5=checksums.get(remote.name, remote.md5))
        destination = os.path.join(target_dir, remote.name)
        if _already_present(destination, remote):
            _say('%s already present' % destination, progress)
        else:
            _fetch(base_url + remote.name, destination, remote.md5, remote.md5_of, progress)
        paths.append(destination)
    if name == 'cifar10':
        _extract_cifar(paths[0], target_dir)
        return [os.path.join(target_dir, 'cifar-10-batches-py')]
    if name in ('mnist', 'fashion-mnist'):
        gunzip_idx_files(paths, progress)
    return paths


def gunzip_idx_files(paths, progress=False):
    """Leave the uncompressed IDX file beside each ``.gz``, as pylearn2's download
    script does (pylearn2's MNIST reads only those); each written atomically.

    Parameters
    ----------
    paths : list of str
        ``*.gz`` files; others are ignored. An existing uncompressed file is kept.

    Returns
    -------
    list of str, the uncompressed files.
    """
    written = []
    for path in paths:
        if not path.endswith('.gz'):
            continue
        raw = path[:-3]
        if not os.path.isfile(raw):
            fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(raw) + '.',
                                       suffix='.tmp', dir=os.path.dirname(raw))
            try:
                with os.fdopen(fd, 'wb') as out, gzip.open(path, 'rb') as source:
                    shutil.copyfileobj(source, out, 1 << 20)
                os.replace(tmp, raw)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            _say('wrote %s' % raw, progress)
        written.append(raw)
    return written

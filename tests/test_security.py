"""Nothing read from a file runs code: planted CIFAR-10 pickles and planted kernel
libraries are refused, and the planted code is shown not to have run."""
import importlib.util
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from binary_net import data as datasets, kernels
from binary_net.data import DatasetError
from helpers import REPO, assert_one_line_error

BUILD_BATCHES = os.path.join(REPO, '..', 'shared', 'data', 'cifar10-jpeg', 'build_batches.py')


class Planted:
    """Pickles as a call of ``function(*args)``: what a hostile batch would hold."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def batch(count=3, seed=0, **replace):
    rng = np.random.RandomState(seed)
    content = {b'batch_label': b'training batch 1 of 5',
               b'labels': [int(v) for v in rng.randint(0, 10, count)],
               b'data': rng.randint(0, 256, (count, 3072)).astype(np.uint8),
               b'filenames': [b'%05d.png' % i for i in range(count)]}
    content.update(replace)
    return content


def write_cifar(root, planted_in='data_batch_1', planted=None, protocol=2):
    """Six batches under root; ``planted_in`` holds ``planted`` as its data."""
    directory = os.path.join(root, 'cifar10', 'cifar-10-batches-py')
    os.makedirs(directory, exist_ok=True)
    for number, name in enumerate(datasets.CIFAR10_TRAIN_BATCHES + (datasets.CIFAR10_TEST_BATCH,)):
        content = batch(seed=number)
        if name == planted_in and planted is not None:
            content[b'data'] = planted
        with open(os.path.join(directory, name), 'wb') as stream:
            pickle.dump(content, stream, protocol=protocol)
    return directory


def _marker_command(marker):
    return 'echo planted > %s' % marker


@pytest.mark.parametrize('protocol', [2, 4])
def test_planted_os_system_in_a_cifar_batch_does_not_run(tmp_path, protocol):
    marker = tmp_path / 'MARKER'
    root = str(tmp_path / 'data')
    directory = write_cifar(root, planted=Planted(os.system, _marker_command(marker)),
                            protocol=protocol)
    planted_path = os.path.join(directory, 'data_batch_1')
    before = open(planted_path, 'rb').read()
    # The plant is real: an ordinary unpickler runs it (in a child process).
    subprocess.run([sys.executable, '-c', 'import pickle, sys; pickle.load(open(sys.argv[1], "rb"), '
                    'encoding="bytes")', planted_path], check=True, capture_output=True)
    assert marker.exists()
    marker.unlink()

    result = subprocess.run([sys.executable, '-m', 'binary_net.data', 'check', 'cifar10',
                             '--data-path', root], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in result.stderr, result.stderr
    assert lines[0].startswith('error: %s is not a CIFAR-10 batch' % planted_path)
    assert 'system' in lines[0] and 'nothing in it was run' in lines[0]
    assert not marker.exists()
    assert open(planted_path, 'rb').read() == before


def test_planted_batch_is_refused_before_pylearn2_reads_it(tmp_path):
    """--loader pylearn2: pylearn2 unpickles with plain pickle, so the batches are read
    through the restricted unpickler first."""
    marker = tmp_path / 'MARKER'
    root = str(tmp_path / 'data')
    write_cifar(root, planted_in='data_batch_4', planted=Planted(os.system, _marker_command(marker)))
    with pytest.raises(DatasetError) as excinfo:
        datasets.load('cifar10', root, loader='pylearn2')
    assert_one_line_error(excinfo, 'data_batch_4 is not a CIFAR-10 batch', 'nothing in it was run')
    assert not marker.exists()


@pytest.mark.parametrize('function, args', [
    (eval, ('__import__("os").system("echo x > MARKER")',)),
    (exec, ('open("MARKER", "w").write("x")',)),
    (subprocess.call, (['touch', 'MARKER'],)),
    (shutil.rmtree, ('/nonexistent-target',)),
])
def test_any_other_callable_in_a_batch_is_refused(tmp_path, monkeypatch, function, args):
    monkeypatch.chdir(tmp_path)
    root = str(tmp_path / 'data')
    write_cifar(root, planted_in='test_batch', planted=Planted(function, *args))
    with pytest.raises(DatasetError) as excinfo:
        datasets.load_cifar10(root)
    assert_one_line_error(excinfo, 'test_batch is not a CIFAR-10 batch', function.__name__,
                          'nothing in it was run')
    assert not (tmp_path / 'MARKER').exists()


def test_numpy_reconstruction_cannot_smuggle_other_classes(tmp_path):
    """_reconstruct is admitted, but only with ndarray: the class argument is a global too."""
    root = str(tmp_path / 'data')
    from numpy.core.multiarray import _reconstruct
    write_cifar(root, planted=Planted(_reconstruct, np.recarray, (0,), b'b'))
    with pytest.raises(DatasetError) as excinfo:
        datasets.load_cifar10(root)
    assert_one_line_error(excinfo, 'data_batch_1', 'numpy', 'recarray', 'nothing in it was run')


def test_batches_in_the_official_format_still_load(tmp_path):
    """Python-2 pickles as build_batches.py (and the official archive) write them, and
    Python 3 pickles at protocols 2 and 4, load through the restricted unpickler."""
    if not os.path.exists(BUILD_BATCHES):
        pytest.skip('../shared/data/cifar10-jpeg/build_batches.py not found')
    pytest.importorskip('PIL')
    spec = importlib.util.spec_from_file_location('build_batches', BUILD_BATCHES)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for protocol in (2, 4):
        root = str(tmp_path / ('p%d' % protocol))
        directory = write_cifar(root, protocol=protocol)
        if protocol == 2:   # the official opcodes: Python 2 strings, numpy.core globals
            for number, name in enumerate(sorted(os.listdir(directory))):
                build._dump(batch(seed=number), os.path.join(directory, name))
        loaded = datasets.load_cifar10(root)
        first = batch(seed=0)
        np.testing.assert_array_equal(loaded['train'][0][:3].reshape(3, -1), first[b'data'])
        np.testing.assert_array_equal(loaded['train'][1][:3], first[b'labels'])
        assert loaded['test'][0].shape == (3, 3, 32, 32)


# ---------------------------------------------------------------------------
# Kernel cache directory
# ---------------------------------------------------------------------------

OTHER_UID = 54321
needs_root = pytest.mark.skipif(os.getuid() != 0, reason='needs root to chown to another uid')
needs_gcc = pytest.mark.skipif(shutil.which('gcc') is None, reason='needs gcc')


@pytest.fixture
def fresh_kernels(monkeypatch):
    monkeypatch.setattr(kernels.library, 'loaded', {})
    monkeypatch.delenv('BINARY_NET_CACHE', raising=False)


@needs_root
def test_cache_directory_of_another_user_is_refused(tmp_path, monkeypatch, fresh_kernels):
    cache = tmp_path / 'cache'
    cache.mkdir(mode=0o700)
    os.chown(cache, OTHER_UID, OTHER_UID)
    monkeypatch.setenv('BINARY_NET_CACHE', str(cache))
    with pytest.raises(kernels.KernelBuildError) as excinfo:
        kernels.pack_signs(np.ones((2, 3), np.float32))
    assert_one_line_error(excinfo, 'refusing the kernel cache directory %s' % cache,
                          'belongs to uid %d' % OTHER_UID)
    assert os.listdir(cache) == []


def test_cache_directory_writable_by_others_is_refused(tmp_path, monkeypatch, fresh_kernels):
    cache = tmp_path / 'cache'
    cache.mkdir()
    os.chmod(cache, 0o777)
    monkeypatch.setenv('BINARY_NET_CACHE', str(cache))
    with pytest.raises(kernels.KernelBuildError) as excinfo:
        kernels.pack_signs(np.ones((2, 3), np.float32))
    assert_one_line_error(excinfo, str(cache), 'writable by others (mode 777)')
    assert os.listdir(cache) == []


@needs_root
def test_planted_fallback_directory_in_tmp_is_refused(tmp_path, monkeypatch, fresh_kernels):
    """With no usable ~/.cache, the fallback $TMPDIR/binary_net-<uid> must be ours."""
    import tempfile
    home = tmp_path / 'home-is-a-file'
    home.write_text('')
    monkeypatch.setenv('HOME', str(home))
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    planted = tmp_path / ('binary_net-%d' % os.getuid())
    planted.mkdir(mode=0o755)
    os.chown(planted, OTHER_UID, OTHER_UID)
    with pytest.raises(kernels.KernelBuildError) as excinfo:
        kernels.pack_signs(np.ones((2, 3), np.float32))
    assert_one_line_error(excinfo, str(planted), 'belongs to uid %d' % OTHER_UID)
    # Without the plant the fallback is created private.
    planted.rmdir()
    kernels.pack_signs(np.ones((2, 3), np.float32))
    assert oct(os.stat(planted).st_mode & 0o777) == oct(0o700)


def test_new_cache_directory_is_private(tmp_path, monkeypatch, fresh_kernels):
    cache = tmp_path / 'new' / 'cache'
    monkeypatch.setenv('BINARY_NET_CACHE', str(cache))
    np.testing.assert_array_equal(kernels.pack_signs(np.array([[1., -1.]], np.float32)), [[1]])
    assert os.stat(cache).st_mode & 0o777 == 0o700
    libraries = os.listdir(cache)
    assert len(libraries) == 1 and libraries[0].endswith('.so')
    st = os.stat(cache / libraries[0])
    assert st.st_uid == os.getuid() and not st.st_mode & 0o022 and st.st_size > 0


_PLANT_C = r'''
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen("%s", "w");
    if (f) { fputs("planted code ran\n", f); fclose(f); }
}
'''

_USE_KERNELS = ('import sys, numpy as np; from binary_net import kernels as K; '
                'x = np.random.RandomState(0).randn(5, 130); '
                'p = K.PackedDense(x.T); '
                'assert (p.matmul_signs(x) == np.dot(np.where(x >= 0, 1, -1), '
                'np.where(x >= 0, 1, -1).T)).all(); print(K.kernel_info()["path"])')


def _use_kernels(cache):
    env = dict(os.environ, BINARY_NET_CACHE=str(cache))
    result = subprocess.run([sys.executable, '-c', _USE_KERNELS], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@needs_gcc
def test_planted_or_damaged_cached_library_is_rebuilt_not_loaded(tmp_path):
    cache = tmp_path / 'cache'
    library = _use_kernels(cache)             # builds into an empty cache
    assert os.path.dirname(library) == str(cache)
    marker = tmp_path / 'MARKER'
    plant_c = tmp_path / 'plant.c'
    plant_c.write_text(_PLANT_C % marker)
    planted = tmp_path / 'plant.so'
    subprocess.run(['gcc', '-shared', '-fPIC', '-o', str(planted), str(plant_c)], check=True)
    # The plant is real: loading it runs its constructor.
    subprocess.run([sys.executable, '-c', 'import ctypes, sys; ctypes.CDLL(sys.argv[1])',
                    str(planted)], check=True)
    assert marker.exists()
    marker.unlink()

    plants = [('writable by others', lambda: os.chmod(library, 0o666))]
    if os.getuid() == 0:
        plants.append(('owned by another user', lambda: os.chown(library, OTHER_UID, OTHER_UID)))
    for what, make_untrusted in plants:
        shutil.copyfile(planted, library)
        os.chmod(library, 0o755)
        make_untrusted()
        assert _use_kernels(cache) == library, what
        assert not marker.exists(), what
        st = os.stat(library)
        assert st.st_uid == os.getuid() and not st.st_mode & 0o022, what
        assert open(library, 'rb').read() != open(planted, 'rb').read(), what

    for what, content in (('zero bytes', b''), ('garbage', b'\x7fELF not really a library')):
        with open(library, 'wb') as stream:
            stream.write(content)
        os.chmod(library, 0o755)
        assert _use_kernels(cache) == library, what
        assert os.path.getsize(library) > 1000, what
    assert sorted(os.listdir(cache)) == [os.path.basename(library)]   # no temporaries left

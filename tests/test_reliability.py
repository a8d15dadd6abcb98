"""Nothing is lost: the lock on --model-out, corrupt checkpoints, a full disk, stale
temporaries, Ctrl-C and NaN before the first checkpoint, Ctrl-C during a download and
in the middle of a save. Each case checks the exit status, the one line, and that the
files that existed before are unchanged."""
import errno
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from binary_net import modelfile, networks, train as training
from failing_file import FailingFile
from helpers import REPO, interruptible, run_python, write_mnist

SPEC = networks.mnist_spec(num_units=32, dropout_p=0)
MNIST_TRAIN = os.path.join(REPO, 'train', 'mnist_train.py')


def error_lines(err):
    assert 'Traceback' not in err and 'Exception ignored' not in err, err
    return [line for line in err.strip().splitlines() if line.strip()]


def snapshot(directory):
    return {name: open(os.path.join(directory, name), 'rb').read()
            for name in sorted(os.listdir(directory))
            if os.path.isfile(os.path.join(directory, name))}


# ---------------------------------------------------------------------------
# The trainer's command line, in this process, on a tiny random MNIST
# ---------------------------------------------------------------------------

@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('data'))
    write_mnist(root, np.random.RandomState(0), 300, 50)
    return root


@pytest.fixture(scope='module')
def shared_trainer():
    """One compiled trainer for every run of this module (compiling takes a while)."""
    trainer = training.Trainer(SPEC, seed=3)
    return trainer, trainer.param_values(), [v.get_value() for v in trainer.optimizer_state]


@pytest.fixture
def run_trainer(shared_trainer, data_root, monkeypatch, capsys):
    """``run_trainer(model, *flags) -> (status, stdout, stderr)`` through training.run_cli."""
    trainer, params, state = shared_trainer

    def fresh(spec, seed):
        assert spec == SPEC
        trainer.set_param_values(params)
        for variable, value in zip(trainer.optimizer_state, state):
            variable.set_value(value)
        trainer.checkpoint_path = None
        return trainer

    monkeypatch.setattr(training.cli, 'Trainer', fresh)

    def run(model, *flags):
        parser = training.make_parser('test', epochs=2, batch_size=50, lr_start=3e-3,
                                      lr_end=3e-4, model_out=model)
        args = parser.parse_args(['--data-path', data_root, '--valid-size', '100',
                                  '--no-progress'] + list(flags))
        capsys.readouterr()
        status = training.run_cli('test MLP', SPEC, args, 'mnist')
        out, err = capsys.readouterr()
        return status, out, err

    run.trainer = trainer
    return run


def interrupt_epoch(monkeypatch, trainer, at_call, error=KeyboardInterrupt):
    """Make call number ``at_call`` (1-based) of trainer.train_epoch raise ``error``."""
    calls = []
    real = type(trainer).train_epoch

    def train_epoch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == at_call:
            raise error
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(trainer), 'train_epoch', train_epoch)
    return lambda: monkeypatch.setattr(type(trainer), 'train_epoch', real)


def test_ctrl_c_before_the_first_checkpoint_does_not_suggest_resume(run_trainer, tmp_path,
                                                                    monkeypatch):
    model = str(tmp_path / 'm.npz')
    interrupt_epoch(monkeypatch, run_trainer.trainer, 1)
    status, out, err = run_trainer(model)
    assert status == 130
    assert error_lines(err) == ['interrupted before the first checkpoint was written: there is '
                                'nothing to resume']
    assert os.listdir(tmp_path) == []


def test_nan_before_the_first_checkpoint_does_not_suggest_resume(run_trainer, tmp_path,
                                                                 monkeypatch):
    model = str(tmp_path / 'm.npz')
    monkeypatch.setattr(run_trainer.trainer, '_train', lambda X, y: np.float32('nan'))
    status, out, err = run_trainer(model)
    assert status == 1
    assert error_lines(err) == ['error: training loss became NaN at epoch 1, batch 1; no '
                                'checkpoint was written, so there is nothing to resume']
    assert os.listdir(tmp_path) == []


def _first_epoch_then_ctrl_c(run_trainer, monkeypatch, model):
    restore = interrupt_epoch(monkeypatch, run_trainer.trainer, 2)
    status, out, err = run_trainer(model)
    restore()
    assert status == 130 and 'Epoch 1/2' in out
    assert error_lines(err) == ['interrupted: the best model and the checkpoint of the last '
                                'finished epoch are saved beside %s; continue with --resume' % model]


def test_truncated_checkpoint_on_resume_is_one_line(run_trainer, tmp_path, monkeypatch):
    model = str(tmp_path / 'm.npz')
    _first_epoch_then_ctrl_c(run_trainer, monkeypatch, model)
    checkpoint = training.companion_paths(model)[0]
    for damage in (lambda raw: raw[:len(raw) // 2], lambda raw: b''):
        raw = open(checkpoint, 'rb').read()
        with open(checkpoint, 'wb') as stream:
            stream.write(damage(raw))
        before = snapshot(str(tmp_path))
        status, out, err = run_trainer(model, '--resume')
        assert status == 1
        lines = error_lines(err)
        assert len(lines) == 1, lines
        assert lines[0].startswith('error: cannot resume from %s: it is truncated or corrupt'
                                   % checkpoint)
        assert snapshot(str(tmp_path)) == before
    modelfile.load_model(model)


real_fdopen = os.fdopen


def full_disk():
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fill_disk_for(monkeypatch, fragment, limit=20000):
    """Writes to files whose name holds ``fragment`` fail with ENOSPC after ``limit`` bytes."""
    def fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        name = os.readlink('/proc/self/fd/%d' % fd)
        return FailingFile(f, limit, full_disk) if fragment in os.path.basename(name) else f

    monkeypatch.setattr(os, 'fdopen', fdopen)


@pytest.mark.skipif(not os.path.isdir('/proc/self/fd'), reason='needs /proc')
def test_disk_full_while_writing_the_checkpoint(run_trainer, tmp_path, monkeypatch):
    model = str(tmp_path / 'm.npz')
    _first_epoch_then_ctrl_c(run_trainer, monkeypatch, model)
    checkpoint = training.companion_paths(model)[0]
    before = snapshot(str(tmp_path))
    fill_disk_for(monkeypatch, '.ckpt.npz.')
    status, out, err = run_trainer(model, '--resume')
    assert status == 1 and 'Epoch 2/2' not in out
    assert error_lines(err) == [
        'error: cannot write %s: No space left on device; the best model so far and the last '
        'checkpoint are kept beside %s; continue with --resume' % (checkpoint, model)]
    after = snapshot(str(tmp_path))
    assert after[os.path.basename(checkpoint)] == before[os.path.basename(checkpoint)]
    assert sorted(after) == sorted(before)          # no temporary left behind
    modelfile.load_model(model)                     # the model is intact
    monkeypatch.setattr(os, 'fdopen', real_fdopen)
    status, out, err = run_trainer(model, '--resume')   # space again: it continues
    assert status == 0 and 'Resumed from' in out and 'Epoch 2/2' in out, err


def test_stale_temporaries_of_the_same_target_are_removed_at_start(run_trainer, tmp_path,
                                                                  monkeypatch):
    model = str(tmp_path / 'm.npz')
    stale = ['.m.npz.ab12cd_9.tmp', '.m.ckpt.npz.zzzzzzzz.tmp', '.m.png.0a1b2c3d.tmp']
    kept = ['.other.npz.ab12cd_9.tmp', '.m.npz.short.tmp', 'm.npz.ab12cd_9.tmp', 'notes.txt']
    for name in stale + kept:
        (tmp_path / name).write_bytes(b'x' * 1000)
    # And the real thing: a checkpoint writer killed with SIGKILL in the middle of its write.
    checkpoint = training.companion_paths(model)[0]
    killed = run_python(['-c', 'import os, signal, sys; from binary_net import modelfile; '
                         'modelfile.atomic_write(sys.argv[1], lambda f: (f.write(b"x" * 99999), '
                         'f.flush(), os.kill(os.getpid(), signal.SIGKILL)))', checkpoint])
    assert killed.returncode == -signal.SIGKILL
    left = sorted(set(os.listdir(tmp_path)) - set(stale + kept))
    assert len(left) == 1 and left[0].startswith('.m.ckpt.npz.') and left[0].endswith('.tmp')
    stale.append(left[0])
    interrupt_epoch(monkeypatch, run_trainer.trainer, 1)
    status, out, err = run_trainer(model)
    assert status == 130
    assert sorted(os.listdir(tmp_path)) == sorted(kept)
    for name in stale:
        assert 'Removed %s, left by an interrupted save' % (tmp_path / name) in out


# ---------------------------------------------------------------------------
# The lock on --model-out
# ---------------------------------------------------------------------------

def test_second_training_with_the_same_model_out_stops(tmp_path, data_root):
    model = str(tmp_path / 'm.npz')
    with open(model, 'wb') as stream:
        stream.write(b'the model of an earlier run')
    before = snapshot(str(tmp_path))
    with training.ModelLock(model) as lock:
        assert os.path.exists(lock.path)
        result = run_python([MNIST_TRAIN, '--data-path', data_root, '--model-out', model,
                             '--epochs', '1', '--valid-size', '100', '--no-progress'])
        assert result.returncode == 2
        lines = error_lines(result.stderr)
        assert lines == ['error: %s is in use by another training (pid %d on host %s, started %s: '
                         '%s); wait for it to finish or choose another --model-out'
                         % (model, os.getpid(), socket.gethostname(),
                            lines[0].split('started ')[1].split(': ')[0], ' '.join(sys.argv))]
        snapshot_while_locked = snapshot(str(tmp_path))
    assert not os.path.exists(lock.path)
    del snapshot_while_locked[os.path.basename(lock.path)]
    assert snapshot_while_locked == before == snapshot(str(tmp_path))


def test_stale_lock_of_a_dead_run_is_taken_over(tmp_path):
    model = str(tmp_path / 'm.npz')
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    with open(model + '.lock', 'w') as stream:
        stream.write('{"pid": %d, "host": "%s", "started": "yesterday", "command": "x"}'
                     % (dead.pid, socket.gethostname()))
    with training.ModelLock(model) as lock:
        assert lock.previous['pid'] == dead.pid
        with pytest.raises(training.ModelInUseError, match='pid %d' % os.getpid()):
            training.ModelLock(model)
    # A holder that was killed (-9) leaves its lock file; the next run takes it over.
    holder = subprocess.Popen(
        [sys.executable, '-c', 'import sys, time; from binary_net import train as training; '
         'lock = training.ModelLock(sys.argv[1]); print("locked", flush=True); time.sleep(60)',
         model], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == 'locked'
    with pytest.raises(training.ModelInUseError, match='pid %d' % holder.pid):
        training.ModelLock(model)
    holder.kill()
    holder.wait()
    holder.stdout.close()
    with training.ModelLock(model) as lock:
        assert lock.previous['pid'] == holder.pid
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------
# Ctrl-C in the middle of a save, and during a download
# ---------------------------------------------------------------------------

_SAVE_SCRIPT = '''
import errno, os, sys
import numpy as np
sys.path.insert(0, sys.argv[3])
from binary_net import modelfile
from failing_file import FailingFile

errors = {'sigint': KeyboardInterrupt,
          'enospc': lambda: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))}
real_fdopen = os.fdopen
os.fdopen = lambda fd, *args, **kwargs: FailingFile(real_fdopen(fd, *args, **kwargs), 50000,
                                                    errors[sys.argv[1]])
try:
    modelfile.save_model(sys.argv[2], [np.ones((100, 1000), np.float32)] * 3)
except (KeyboardInterrupt, OSError) as error:
    print('stopped:', type(error).__name__, error)
'''


@pytest.mark.parametrize('how', ['sigint', 'enospc'])
def test_interrupted_save_leaves_the_old_file_and_no_noise(tmp_path, how):
    model = str(tmp_path / 'm.npz')
    modelfile.save_model(model, [np.zeros(3)])
    before = snapshot(str(tmp_path))
    result = run_python(['-c', _SAVE_SCRIPT, how, model, os.path.dirname(__file__)])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ''            # no "Exception ignored in ZipFile.__del__"
    assert result.stdout.startswith('stopped: %s' % ('KeyboardInterrupt' if how == 'sigint'
                                                     else 'OSError'))
    if how == 'enospc':
        assert result.stdout.strip().endswith("No space left on device: '%s'" % model)
    assert snapshot(str(tmp_path)) == before


class _StallingHandler(http.server.BaseHTTPRequestHandler):
    """Sends the headers and the first ``server.sent`` bytes of the body, then stalls."""

    def do_GET(self):
        body = self.server.body
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body[:self.server.sent])
        self.wfile.flush()
        self.server.release.wait(60)

    def log_message(self, *args):
        pass


def test_ctrl_c_during_a_download_keeps_the_part_file(tmp_path):
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _StallingHandler)
    server.body = np.random.RandomState(0).bytes(300000)
    server.sent, server.release = 100000, threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.02},
                              daemon=True)
    thread.start()
    try:
        part = tmp_path / 'mnist' / 'train-images-idx3-ubyte.gz.part'
        process = interruptible(
            [sys.executable, '-m', 'binary_net.data', 'download', 'mnist', '--quiet',
             '--data-path', str(tmp_path),
             '--base-url', 'http://127.0.0.1:%d/' % server.server_address[1]],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while not (part.exists() and part.stat().st_size >= 65536) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
    assert process.returncode == 130
    size = part.stat().st_size
    assert size >= 65536 and part.read_bytes() == server.body[:size]
    assert error_lines(err) == [
        'interrupted: download of http://127.0.0.1:%d/train-images-idx3-ubyte.gz stopped at '
        'byte %d; %s is kept: run the same command again to resume'
        % (server.server_address[1], size, part)]
    assert not (tmp_path / 'mnist' / 'train-images-idx3-ubyte.gz').exists()

"""``python -m binary_net``: one way in (binary_net.cli).

Every command is listed by ``--help``; ``evaluate DATASET`` is test/DATASET_test.py;
summary, pack and export never import Theano; the commands share one exit status
for errors (2) and print one ``error:`` line.
"""
import os
import re

import pytest

from binary_net import cli, modelfile
from binary_net.cli import common
from helpers import REPO, random_model, run_python, unit_images, write_mnist

SHIPPED = os.path.join(REPO, 'models', 'mnist_xnor_1024.npz')


def test_help_lists_every_command_on_a_line_of_its_own():
    result = run_python(['-m', 'binary_net', '--help'])
    assert result.returncode == 0, result.stderr
    listed = {}
    for line in result.stdout.splitlines():
        match = re.match(r'^    (\w+)\s{2,}(\S.*)$', line)
        if match:
            listed[match.group(1)] = match.group(2)
    assert sorted(listed) == sorted(['train', 'evaluate', 'summary', 'pack', 'export',
                                     'download', 'check'])
    assert sorted(listed) == sorted(cli.COMMANDS)
    for name, text in listed.items():
        assert text == cli.COMMANDS[name][2]


def test_an_unknown_command_exits_2():
    result = run_python(['-m', 'binary_net', 'frobnicate'])
    assert result.returncode == 2
    assert 'invalid choice' in result.stderr


@pytest.fixture(scope='module')
def small_mnist(tmp_path_factory):
    """A tiny MNIST folder and a small MNIST-shaped model in a temporary directory."""
    import numpy as np
    from binary_net import networks

    root = str(tmp_path_factory.mktemp('data'))
    write_mnist(root, np.random.RandomState(3), n_train=60, n_test=40)
    spec = networks.mnist_spec(num_units=64)
    rng = np.random.RandomState(0)
    values = random_model(spec, unit_images(rng, 16, (1, 28, 28)), rng)
    model = os.path.join(root, 'small.npz')
    modelfile.save_model(model, values, spec)
    return root, model


@pytest.mark.parametrize('mode', ['float', 'fixed'])
def test_evaluate_is_the_test_script(small_mnist, mode):
    """``python -m binary_net evaluate mnist`` prints what test/mnist_test.py prints."""
    root, model = small_mnist
    flags = ['--model', model, '--no', '30', '--mode', mode, '--data-path', root,
             '--calibration-size', '20']
    script = run_python([os.path.join(REPO, 'test', 'mnist_test.py')] + flags)
    command = run_python(['-m', 'binary_net', 'evaluate', 'mnist'] + flags)
    assert script.returncode == command.returncode == 0, (script.stderr, command.stderr)
    drop_time = lambda text: [l for l in text.splitlines() if not l.startswith('Time:')]
    assert drop_time(script.stdout) == drop_time(command.stdout)
    assert script.stdout.splitlines()[-1].startswith('Test error: ')
    assert ('mode %s)' % mode) in script.stdout.splitlines()[-1]


def test_evaluate_errors_are_one_line_with_status_2(small_mnist, tmp_path):
    root, model = small_mnist
    for argv in (['evaluate', 'mnist', '--model', str(tmp_path / 'missing.npz')],
                 ['evaluate', 'mnist', '--model', model, '--no', '100000', '--data-path', root]):
        result = run_python(['-m', 'binary_net'] + argv)
        assert result.returncode == common.EXIT_ERROR == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
    result = run_python(['-m', 'binary_net', 'evaluate', 'imagenet', '--model', model])
    assert result.returncode == 2 and 'invalid choice' in result.stderr


NO_THEANO = '''
import sys
from binary_net.cli import main
status = main(sys.argv[1:])
assert status == 0, status
loaded = sorted(m for m in sys.modules if m == 'theano' or m.startswith('theano.')
                or m == 'lasagne' or m.startswith('lasagne.'))
print('loaded:', ' '.join(loaded) or 'none')
'''


def test_summary_pack_and_export_never_import_theano(small_mnist, tmp_path):
    root, model = small_mnist
    packed = str(tmp_path / 'small.packed.npz')
    for argv in (['summary', '--model', model],
                 ['pack', '--model', model, '--out', packed],
                 ['summary', '--model', packed],
                 ['export', '--model', packed, '--out', str(tmp_path / 'c'), '--data-path', root,
                  '--calibration-size', '20']):
        result = run_python(['-c', NO_THEANO] + argv)
        assert result.returncode == 0, (argv, result.stderr[-2000:])
        assert result.stdout.splitlines()[-1] == 'loaded: none', (argv, result.stdout[-500:])
    assert os.path.exists(os.path.join(str(tmp_path / 'c'), 'mnist.c'))


def test_the_commands_open_models_through_one_helper(small_mnist, tmp_path):
    """open_model reads float and packed files alike and refuses position-only
    files without --dataset in one line."""
    import numpy as np
    from binary_net.deploy import packed

    _, model = small_mnist
    opened = common.open_model(model)
    assert opened.kind == 'float' and opened.described and opened.contents == '23 arrays'
    path = str(tmp_path / 'p.npz')
    packed.save_packed(path, opened.network, opened.spec)
    again = common.open_model(path)
    assert again.kind == 'packed' and again.contents == '%d ops' % len(opened.network)
    X = np.random.RandomState(1).uniform(-1, 1, (4, 1, 28, 28))
    np.testing.assert_array_equal(again.network.predict_scores(X),
                                  opened.network.predict_scores(X))
    with pytest.raises(modelfile.ModelFileError, match='not a binary_net model'):
        common.open_model(path, allow_packed=False)
    positional = str(tmp_path / 'positional.npz')
    np.savez(positional, *opened.values)
    with pytest.raises(modelfile.ModelFileError, match='position-only file .* give --dataset'):
        common.open_model(positional)


def test_report_errors_gives_the_exit_statuses(capsys):
    def fail(error):
        def call():
            raise error
        return call

    assert common.report_errors(lambda: None) == 0
    assert common.report_errors(lambda: 5) == 5
    assert common.report_errors(fail(common.CommandError('bad thing'))) == 2
    assert capsys.readouterr().err == 'error: bad thing\n'
    assert common.report_errors(fail(OSError('first\nsecond'))) == 2
    assert capsys.readouterr().err == 'error: first\n'
    assert common.report_errors(fail(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == 'error: interrupted\n'
    with pytest.raises(ValueError):
        common.report_errors(fail(ValueError('not reported')))
    assert common.report_errors(fail(ValueError('reported')), also=(ValueError,)) == 2

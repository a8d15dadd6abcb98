"""Trainer features for short CPU schedules: augmentation, LR schedules, curves."""
import doctest

import numpy as np
import pytest

from binary_net import data as datasets, networks, train


# -- learning-rate schedules ------------------------------------------------------------

def test_exponential_schedule_is_binarynets():
    rates = train.learning_rate_schedule(1e-3, 3e-7, 200)
    decay = (3e-7 / 1e-3) ** (1 / 200.)
    expected = [1e-3 * decay ** e for e in range(200)]
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    per_step = train.learning_rate_schedule(1e-3, 3e-7, 200, 'exp', steps_per_epoch=7)
    assert per_step.shape == (200, 7)
    # constant within an epoch: exactly the per-epoch rate
    assert (per_step == rates[:, None]).all()


def test_cosine_schedule():
    rates = train.learning_rate_schedule(1e-2, 1e-4, 4, 'cosine', steps_per_epoch=25)
    flat = rates.ravel()
    assert flat[0] == pytest.approx(1e-2)
    assert np.all(np.diff(flat) < 0)
    # halfway through the run: the mean of start and end
    assert flat[50] == pytest.approx((1e-2 + 1e-4) / 2)
    t = 99 / 100.
    assert flat[-1] == pytest.approx(1e-4 + (1e-2 - 1e-4) * 0.5 * (1 + np.cos(np.pi * t)))
    np.testing.assert_array_equal(train.learning_rate_schedule(1e-2, 1e-4, 4, 'cosine'),
                                  rates[:, 0])


def test_onecycle_schedule():
    flat = train.learning_rate_schedule(1e-2, 1e-5, 10, 'onecycle', steps_per_epoch=10).ravel()
    peak = int(np.argmax(flat))
    assert peak == 30                       # after 30% of the 100 steps
    assert flat[0] == pytest.approx(1e-2 / 25)
    assert flat[peak] == pytest.approx(1e-2)
    assert np.all(np.diff(flat[:peak + 1]) > 0) and np.all(np.diff(flat[peak:]) < 0)
    assert 1e-5 < flat[-1] < 1e-5 + 1e-2 * 1e-3


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match='unknown learning-rate schedule'):
        train.learning_rate_schedule(1e-3, 1e-4, 3, 'linear')


# -- augmentation -------------------------------------------------------------------

def _candidates(image, pad):
    """Every crop of ``image`` zero-padded by ``pad``, and its mirror (reference)."""
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)))
    h, w = image.shape[1:]
    out = {}
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy:dy + h, dx:dx + w]
            out[(dy, dx, False)] = crop
            out[(dy, dx, True)] = crop[:, :, ::-1]
    return out


def test_crop_and_flip_against_reference():
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, (200, 3, 8, 8)).astype(np.float32)
    augment = train.Augmentation(crop_pad=2, flip=True)
    out = augment(X, np.random.RandomState(5))
    assert out.shape == X.shape and out.dtype == X.dtype
    seen = set()
    for image, result in zip(X, out):
        matches = [key for key, crop in _candidates(image, 2).items()
                   if np.array_equal(crop, result)]
        assert matches, 'an output is no crop or mirrored crop of its input'
        seen.update(matches)
    offsets = {(dy, dx) for dy, dx, _ in seen}
    assert len(offsets) == 25                     # all 5 x 5 offsets occur
    flips = sum(1 for image, result in zip(X, out)
                if not any(np.array_equal(crop, result) for key, crop in
                           _candidates(image, 2).items() if not key[2]))
    assert 60 < flips < 140                       # about half mirrored
    # seeded: the same generator state gives the same batch; the input is untouched
    np.testing.assert_array_equal(out, augment(X, np.random.RandomState(5)))
    assert not np.array_equal(out, augment(X, np.random.RandomState(6)))
    assert np.array_equal(X, np.random.RandomState(0).uniform(-1, 1, X.shape).astype(np.float32))


def test_flip_only_and_off():
    X = np.random.RandomState(1).uniform(-1, 1, (50, 3, 4, 4)).astype(np.float32)
    flipped = train.Augmentation(flip=True)(X, np.random.RandomState(0))
    for image, result in zip(X, flipped):
        assert np.array_equal(result, image) or np.array_equal(result, image[:, :, ::-1])
    assert not np.array_equal(flipped, X)
    off = train.Augmentation()
    assert not off and train.Augmentation(crop_pad=1) and train.Augmentation(flip=True)
    with pytest.raises(ValueError):
        train.Augmentation(crop_pad=-1)


def test_trainer_flags_default_to_the_original():
    import argparse
    parser = train.make_parser('x', epochs=200, batch_size=50, lr_start=1e-3,
                                  lr_end=3e-7, model_out='m.npz')
    train.add_augmentation_arguments(parser)
    args = parser.parse_args([])
    assert (args.lr_schedule, args.crop_pad, args.flip, args.augment) == ('exp', 0, False, False)
    args = parser.parse_args(['--augment', '--lr-schedule', 'onecycle'])
    assert args.augment and args.lr_schedule == 'onecycle'
    with pytest.raises(SystemExit):
        parser.parse_args(['--lr-schedule', 'linear'])
    assert isinstance(parser, argparse.ArgumentParser)


# -- curves with one epoch ----------------------------------------------------------------

def test_curves_of_one_epoch_show_points(tmp_path):
    import matplotlib.image
    history = [dict(epoch=1, lr=1e-3, train_loss=0.8, valid_loss=0.7, valid_error=0.4,
                    test_error=0.41, seconds=1.0)]
    path = str(tmp_path / 'one.png')
    fig = train.plot_curves(history, path, 'one epoch')
    lines = [line for ax in fig.axes for line in ax.get_lines()]
    assert len(lines) == 4
    for line in lines:
        assert len(line.get_xdata()) == 1
        assert line.get_marker() not in (None, '', 'None', ' ')
    # the first line's colour (matplotlib's C0, #1f77b4) is drawn in the PNG
    pixels = matplotlib.image.imread(path)[:, :, :3]
    c0 = np.array([0x1f, 0x77, 0xb4]) / 255.
    assert (np.abs(pixels - c0).max(axis=2) < 0.05).sum() > 20


# -- the trainer with augmentation and a schedule --------------------------------------------

@pytest.fixture(scope='module')
def small_mnist(mnist_root):
    return datasets.prepare('mnist', data_path=mnist_root, train_size=3000, valid_size=1000)


def test_fit_with_augmentation_and_onecycle_is_seeded_and_learns(small_mnist, tmp_path):
    spec = networks.mnist_spec(num_units=128, dropout_p=0.0)
    trainer = train.Trainer(spec, seed=3)
    initial = trainer.param_values(), [v.get_value() for v in trainer.optimizer_state]
    kwargs = dict(epochs=2, batch_size=100, lr_start=3e-3, lr_end=3e-5, progress=False,
                  log=lambda line: None, lr_schedule='onecycle',
                  augmentation=train.Augmentation(crop_pad=2, flip=False))
    first = train.fit(trainer, small_mnist, str(tmp_path / 'a.npz'), **kwargs)
    trainer.set_param_values(initial[0])
    for v, value in zip(trainer.optimizer_state, initial[1]):
        v.set_value(value)
    second = train.fit(trainer, small_mnist, str(tmp_path / 'b.npz'), **kwargs)
    assert [h['train_loss'] for h in first] == [h['train_loss'] for h in second]
    assert first[0]['lr'] == pytest.approx(3e-3 / 25)
    assert first[-1]['valid_error'] < 0.5          # chance: 90%
    # resuming with another schedule or augmentation is refused
    with pytest.raises(train.TrainingError, match='lr_schedule'):
        train.fit(trainer, small_mnist, str(tmp_path / 'a.npz'), resume=True,
                     **dict(kwargs, epochs=2, lr_schedule='cosine'))
    with pytest.raises(train.TrainingError, match='flip'):
        train.fit(trainer, small_mnist, str(tmp_path / 'a.npz'), resume=True,
                     **dict(kwargs, augmentation=train.Augmentation(2, True)))


def test_docstring_examples_hold():
    """The usage Examples in binary_net.train's docstrings run as doctests and hold."""
    result = doctest.testmod(train, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted >= 2

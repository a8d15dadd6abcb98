"""Install binary_net, and the start-up hook that lets a plain ``import lasagne`` work.

Lasagne 0.1 cannot import on Theano 1.0.5 / numpy 1.26 without the repairs in
:mod:`binary_net.compat`. ``binary_net_compat.pth`` registers an import hook at
interpreter start-up (it imports only the standard library) that applies them the
first time Theano or Lasagne is imported. setuptools has no option for a top-level
``.pth`` file, so the build and editable-install commands copy it in themselves.
"""
import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

try:
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # setuptools < 64 installs editable projects through develop
    editable_wheel = None

PTH = 'binary_net_compat.pth'
HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        shutil.copy(os.path.join(HERE, PTH), os.path.join(self.build_lib, PTH))

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]

    def get_output_mapping(self):
        mapping = super().get_output_mapping()
        mapping[os.path.join(self.build_lib, PTH)] = os.path.join(HERE, PTH)
        return mapping


class DevelopWithPth(develop):
    def run(self):
        super().run()
        shutil.copy(os.path.join(HERE, PTH), os.path.join(self.install_dir, PTH))


class _StrategyWithPth:
    """Wraps an editable-install strategy so the wheel also carries the .pth file."""

    def __init__(self, strategy):
        self._strategy = strategy

    def __enter__(self):
        self._strategy.__enter__()
        return self

    def __exit__(self, *exc):
        return self._strategy.__exit__(*exc)

    def __call__(self, wheel, files, mapping):
        self._strategy(wheel, files, mapping)
        with open(os.path.join(HERE, PTH), 'rb') as f:
            wheel.writestr(PTH, f.read())


commands = {'build_py': BuildPyWithPth, 'develop': DevelopWithPth}
if editable_wheel is not None:
    class EditableWheelWithPth(editable_wheel):
        def _select_strategy(self, *args, **kwargs):
            return _StrategyWithPth(super()._select_strategy(*args, **kwargs))

    commands['editable_wheel'] = EditableWheelWithPth

setup(
    name='theano-xnor-net',
    version='0.1.0',
    description='XNOR-Net binary neural networks for Theano and Lasagne, with real '
                'bit-packed XNOR-popcount inference and C export',
    long_description=open(os.path.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.8,<3.12',
    packages=find_packages(include=['binary_net', 'binary_net.*']),
    package_data={'binary_net': ['csrc/*.c', 'csrc/*.h', 'csrc/theano_ext/*.c', 'csrc/export/*',
                               'csrc/export/*/*']},
    install_requires=["theano==1.0.5", "lasagne==0.1", "numpy==1.26.4", "scipy>=1.10", "tqdm>=4", "matplotlib>=3.5"],
    cmdclass=commands,
    entry_points={'console_scripts': ['binary-net=binary_net.__main__:main']},
    license='MIT',
)

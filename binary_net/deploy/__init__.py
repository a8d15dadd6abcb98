"""Deployment: what runs a trained network outside Theano and outside Python.

* :mod:`binary_net.deploy.packed`: packed model files, a folded network with its
  binary weights at 1 bit each (``python -m binary_net pack``);
* :mod:`binary_net.deploy.export`: C99 code generated from an integer network
  (:mod:`binary_net.infer.integer`), from the templates in ``binary_net/csrc/export/``;
* :mod:`binary_net.deploy.firmware`: Cortex-M firmware for that code, its build
  and its runs under QEMU.

None of them imports Theano. The commands around them are in :mod:`binary_net.cli`.
"""

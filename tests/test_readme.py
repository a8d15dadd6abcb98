"""The README's examples run as written."""
import os
import re

import numpy as np

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md')


def _python_block_after(heading):
    text = open(README).read()
    section = text[text.index(heading):]
    return re.search(r'```python\n(.*?)```', section, re.S).group(1)


def test_layer_example_trains():
    namespace = {}
    exec(_python_block_after('## Using the layers in your own network'), namespace)
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (8, 3, 32, 32)).astype('float32')
    t = -np.ones((8, 10), dtype='float32')
    t[np.arange(8), np.arange(8)] = 1
    first = float(namespace['train'](x, t))
    for _ in range(4):
        last = float(namespace['train'](x, t))
    assert np.isfinite(first) and last < first

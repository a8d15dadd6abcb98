"""The package's architecture (issue 14): read from the source with ast, and checked at run time.

* No import circle between the modules of ``binary_net/`` (lazy imports inside
  functions count too: they only hide a circle).
* No private name (``_x``) of one module used by another, neither imported
  (``from .m import _x``) nor read as an attribute (``m._x``).
* The network descriptions (:mod:`binary_net.spec`), the inference
  (:mod:`binary_net.infer`) and the summary never import Theano or Lasagne, not
  even for a position-only file of the original code; nor do the evaluation,
  ``pack`` and ``export`` commands when they start.
"""
import ast
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import REPO

PACKAGE = 'binary_net'
THEANO = ('theano', 'lasagne')


def _modules():
    """{dotted name: (path, is_package)} of every module under binary_net/."""
    modules = {}
    for root, dirs, files in os.walk(os.path.join(REPO, PACKAGE)):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.join(root, name)
                parts = os.path.relpath(path, REPO)[:-3].split(os.sep)
                package = parts[-1] == '__init__'
                modules['.'.join(parts[:-1] if package else parts)] = (path, package)
    return modules


MODULES = _modules()


def _tree(name):
    with open(MODULES[name][0], encoding='utf-8') as f:
        return ast.parse(f.read(), MODULES[name][0])


def _base(name, node):
    """The module an ``ImportFrom`` node imports from (absolute dotted name)."""
    if not node.level:
        return node.module or ''
    parts = name.split('.') if MODULES[name][1] else name.split('.')[:-1]
    parts = parts[:len(parts) - node.level + 1]
    return '.'.join(parts + ([node.module] if node.module else []))


def _imports(name):
    """[(target module, {local name: module it names, or None}, [(imported, from)])]
    for every import statement of a module, at any depth."""
    found = []
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, alias.asname or alias.name.split('.')[0],
                              alias.name if alias.asname else None, None))
        elif isinstance(node, ast.ImportFrom):
            base = _base(name, node)
            for alias in node.names:
                full = base + '.' + alias.name
                target = full if full in MODULES else base
                found.append((target, alias.asname or alias.name,
                              full if full in MODULES else None, alias.name))
    return found


def _edges():
    """{module: set of package modules it imports}, as Python resolves them."""
    edges = {name: set() for name in MODULES}
    for name in MODULES:
        for target, _, _, _ in _imports(name):
            if target in MODULES and target != name \
                    and not (MODULES[target][1] and name.startswith(target + '.')):
                edges[name].add(target)
    return edges


def _circles(edges):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return circles


def test_the_walk_sees_the_package_and_its_imports():
    # The checks below mean something only if the walk finds the modules and edges.
    assert {'binary_net.spec', 'binary_net.errors', 'binary_net.infer',
            'binary_net.infer.ops', 'binary_net.infer.modes'} <= set(MODULES)
    edges = _edges()
    assert 'binary_net.spec' in edges['binary_net.modelfile']
    assert 'binary_net.errors' in edges['binary_net.spec']
    assert 'binary_net.infer.xnor' in edges['binary_net.infer.modes']
    assert 'binary_net.kernels' in edges['binary_net.infer.xnor']      # from .. import kernels
    # A circle planted in a copy of the graph is found.
    planted = {k: set(v) for k, v in edges.items()}
    planted['binary_net.spec'].add('binary_net.modelfile')
    assert any({'binary_net.modelfile', 'binary_net.spec'} <= set(circle)
               for circle in _circles(planted))


def test_no_import_circle():
    assert _circles(_edges()) == []


def _patches(name, tree):
    """Attributes assigned on a module or class of the package that the module imported
    (``Cls.forward_x = f``); repairs of third-party modules (compat's) are not counted."""
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _base(name, node).startswith(PACKAGE):
            imported |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            imported |= {alias.asname or alias.name.split('.')[0] for alias in node.names
                         if alias.name.startswith(PACKAGE)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += ['%s:%d %s.%s' % (name, node.lineno, t.value.id, t.attr) for t in targets
                      if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                      and t.value.id in imported]
    return found


def _private_attributes(name, tree):
    """``m._x`` read in a module of another package module ``m`` it imported."""
    aliases = {local: module for _, local, module, _ in _imports(name) if module}
    aliases.update({alias.asname or alias.name: _base(name, node) + '.' + alias.name
                    for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    for alias in node.names
                    if _base(name, node) + '.' + alias.name in MODULES})
    return ['%s:%d %s.%s' % (name, node.lineno, aliases[node.value.id], node.attr)
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and aliases.get(node.value.id, name) != name
            and node.attr.startswith('_') and not node.attr.startswith('__')]


PLANTED = ('from binary_net import kernels\n'
           'from binary_net.infer.ops import XnorDense\n'
           'XnorDense.forward_xnor = len\n'
           'kernels._pack_numpy(1)\n')


def test_the_checks_find_planted_patches_and_private_uses():
    tree = ast.parse(PLANTED)
    assert _patches('binary_net.summary', tree) == ['binary_net.summary:3 XnorDense.forward_xnor']
    assert _private_attributes('binary_net.summary', tree) == \
        ['binary_net.summary:4 binary_net.kernels._pack_numpy']


def test_no_module_patches_another_and_modes_are_named_in_one_place():
    assert [p for name in MODULES for p in _patches(name, _tree(name))] == []
    naming = [name for name in MODULES for node in ast.walk(_tree(name))
              if isinstance(node, ast.Name) and node.id == 'MODES'
              and isinstance(node.ctx, ast.Store)]
    assert naming == ['binary_net.infer.modes']


def test_no_private_name_imported_across_modules():
    private = ['%s imports %s from %s' % (name, imported, target)
               for name in MODULES for target, _, module, imported in _imports(name)
               if imported and module is None and target in MODULES and target != name
               and imported.startswith('_') and not imported.startswith('__')]
    assert private == []


def test_no_private_attribute_of_another_module():
    assert [use for name in MODULES for use in _private_attributes(name, _tree(name))] == []


def _closure(name):
    """Every package module ``name`` imports, directly or not, and the external top-level
    packages they import (lazy imports included)."""
    seen, external, todo = set(), set(), [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for target, _, module, _ in _imports(current):
            target = module or target
            if target in MODULES:
                todo.append(target)
            elif not target.startswith(PACKAGE + '.') and target != PACKAGE:
                external.add(target.split('.')[0])
    return seen, external


@pytest.mark.parametrize('name', ['binary_net.spec', 'binary_net.errors', 'binary_net.summary',
                                  'binary_net.infer', 'binary_net.deploy.packed',
                                  'binary_net.deploy.export', 'binary_net.deploy.firmware'])
def test_theano_free_modules_import_no_theano_even_lazily(name):
    seen, external = _closure(name)
    assert name in seen
    assert not set(THEANO) & external, (name, sorted(external))
    assert 'binary_net.networks' not in seen and 'binary_net.layers' not in seen


def _run(code):
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=REPO, timeout=600)


@pytest.mark.parametrize('name', ['binary_net.spec', 'binary_net.summary', 'binary_net.infer',
                                  'binary_net.modelfile', 'binary_net.cli.evaluate',
                                  'binary_net.cli.summary', 'binary_net.cli.pack',
                                  'binary_net.cli.export', 'binary_net.deploy.packed'])
def test_importing_loads_no_theano(name):
    result = _run('import sys, %s\n'
                  'print(sorted(m for m in sys.modules if m.split(".")[0] in %r))' % (name, THEANO))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'


def test_summary_and_pack_of_a_position_only_file_load_no_theano(tmp_path):
    # A position-only file of the original code: its reference architecture comes from
    # binary_net.spec, no longer from the Lasagne builders.
    from binary_net import spec
    values = [np.full(shape, 0.5, np.float32) for *_, shape in
              spec.expected_param_shapes(spec.mnist_spec(num_units=32))]
    path = str(tmp_path / 'original.npz')
    np.savez(path, *values)
    code = ('import argparse, sys\n'
            'from binary_net.cli import pack, summary\n'
            'for module, argv in ((summary, ["--model", %r, "--dataset", "mnist"]),\n'
            '                     (pack, ["--model", %r, "--out", %r, "--dataset", "mnist"])):\n'
            '    parser = argparse.ArgumentParser()\n'
            '    module.add_arguments(parser)\n'
            '    assert module.run(parser.parse_args(argv)) == 0\n'
            'print(sorted(m for m in sys.modules if m.split(".")[0] in %r))\n'
            % (path, path, str(tmp_path / 'packed.npz'), THEANO))
    result = _run(code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    binary = 784 * 32 + 2 * 32 * 32
    total = sum(v.size for v in values)
    assert 'Parameters: {:,} ({:,} 1-bit, {:,} 32-bit)'.format(total, binary, total - binary) \
        in lines
    assert 'Binary weights: %d at 1 bit; real-valued parameters: %d' % (binary, 0) not in lines
    assert any(line.startswith('Packed %s (mnist network)' % path) for line in lines)
    assert lines[-1] == '[]'
    assert os.path.getsize(tmp_path / 'packed.npz') > 0


def test_one_set_of_fixed_point_defaults_and_one_table_of_parameters():
    import inspect

    from binary_net import infer, spec
    from binary_net.infer import integer

    defaults = infer.FIXED_DEFAULTS
    signature = inspect.signature(infer.FixedPointConfig)
    assert {name: p.default for name, p in signature.parameters.items()} == defaults
    assert (integer.INPUT_BITS, integer.INPUT_FRAC, integer.PARAM_BITS, integer.ACT_BITS) == \
        (defaults['input_bits'], defaults['input_frac'], defaults['param_bits'],
         defaults['act_bits'])
    # The reference networks' array counts (the original's files) follow from the one table.
    assert spec.count_arrays(spec.mnist_spec()) == 23
    assert spec.count_arrays(spec.cifar10_spec()) == 62
    assert [name for *_, name, _ in spec.expected_param_shapes(spec.mnist_spec())][:5] == \
        list(spec.PARAMS_PER_TYPE['xnor_dense']) + list(spec.PARAMS_PER_TYPE['batch_norm'][:2])

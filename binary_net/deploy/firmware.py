"""Cortex-M firmware for an exported model: sources, build, sizes, emulation.

``python -m binary_net export --target cortex-m4`` (or ``cortex-m3``) writes,
beside the C files of :mod:`binary_net.deploy.export`, a bare-metal firmware for the
Arm MPS2 board QEMU emulates for that core (``mps2-an386``: Cortex-M4,
``mps2-an385``: Cortex-M3), and builds it when ``arm-none-eabi-gcc`` is on the
``PATH``:

``PREFIX_firmware.c``
    ``main()``: reads raw int8 images from a host file and writes, per image,
    the label and the integer scores, through semihosting (``bkpt 0xAB``), and
    counts SysTick ticks inside ``PREFIX_predict()``.
``startup.c``, ``semihosting.c``, ``semihosting.h``, ``timer.h``
    Vector table, reset handler, the semihosting calls, SysTick; no C library.
``mps2.ld``
    The linker script (code in the 4 MiB SSRAM at 0, data and stack in the
    4 MiB at 0x20000000), with optional flash and RAM limits of a smaller part.
``Makefile``
    The same commands :func:`build` runs, plus ``make run``.

The templates live in ``csrc/export/cortex_m/``. :func:`run_qemu` runs a
firmware under ``qemu-system-arm -icount shift=0`` (one instruction per
nanosecond of virtual time) and returns what it printed, with the instructions
per inference worked out from the firmware's SysTick counts and a loop of known
length.
"""
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            'csrc', 'export', 'cortex_m')

#: target name -> (gcc -mcpu, QEMU machine, core name)
TARGETS = {
    'cortex-m3': ('cortex-m3', 'mps2-an385', 'Cortex-M3'),
    'cortex-m4': ('cortex-m4', 'mps2-an386', 'Cortex-M4'),
}
#: The board's memory as mps2.ld gives it (both boards).
BOARD_FLASH = 4 << 20
BOARD_RAM = 4 << 20
STACK_BYTES = 4096

CC = 'arm-none-eabi-gcc'
SIZE = 'arm-none-eabi-size'
QEMU = 'qemu-system-arm'
CFLAGS = ['-mthumb', '-Os', '-std=c99', '-Wall', '-Wextra', '-ffreestanding',
          '-ffunction-sections', '-fdata-sections']
LDFLAGS = ['-mthumb', '-nostdlib', '-T', 'mps2.ld', '-Wl,--gc-sections']
LIBS = ['-lgcc']
QEMU_FLAGS = ['-nographic', '-monitor', 'none', '-serial', 'null', '-icount', 'shift=0']
#: Support files copied as they are.
SUPPORT_FILES = ('startup.c', 'semihosting.c', 'semihosting.h', 'timer.h', 'mps2.ld')

#: A few common parts (name, core, flash bytes, RAM bytes), smallest first.
PARTS = (
    ('STM32F103C8', 'cortex-m3', 64 << 10, 20 << 10),
    ('STM32F401RC', 'cortex-m4', 256 << 10, 64 << 10),
    ('STM32F103RE', 'cortex-m3', 512 << 10, 64 << 10),
    ('STM32F401RE', 'cortex-m4', 512 << 10, 96 << 10),
    ('STM32F411RE', 'cortex-m4', 512 << 10, 128 << 10),
    ('STM32F103ZG', 'cortex-m3', 1 << 20, 96 << 10),
    ('STM32F407VG', 'cortex-m4', 1 << 20, 192 << 10),
    ('STM32F429ZI', 'cortex-m4', 2 << 20, 256 << 10),
)


class FirmwareError(Exception):
    """A build or emulation problem, reported as one line."""


def _template(name):
    with open(os.path.join(TEMPLATE_DIR, name), encoding='ascii') as f:
        return f.read()


def _fill(text, values):
    for key, value in values.items():
        text = text.replace('@%s@' % key, str(value))
    return text


def objects(name):
    """The object files of the firmware of model ``name``, in link order."""
    return [name + '.o', name + '_firmware.o', 'startup.o', 'semihosting.o']


def _sources(name):
    return [o[:-2] + '.c' for o in objects(name)]


def generate_sources(name, target, popcount):
    """The firmware's files as a dict of file name -> text (see the module doc)."""
    cpu, board, core = TARGETS[target]
    values = {'P': name, 'U': name.upper(), 'TARGET': target, 'CPU': cpu, 'BOARD': board,
              'CORE': core, 'POPCOUNT': popcount, 'CFLAGS': ' '.join(CFLAGS),
              'LDFLAGS': ' '.join(LDFLAGS), 'LIBS': ' '.join(LIBS),
              'OBJECTS': ' '.join(objects(name)), 'QEMU_FLAGS': ' '.join(['-M', '$(BOARD)']
                                                                          + QEMU_FLAGS)}
    files = {name + '_firmware.c': _fill(_template('firmware.c'), values),
             'Makefile': _fill(_template('Makefile'), values)}
    for support in SUPPORT_FILES:
        files[support] = _template(support)
    return files


def toolchain_missing():
    """None when arm-none-eabi-gcc and -size are on the PATH, else what is missing."""
    missing = [tool for tool in (CC, SIZE) if shutil.which(tool) is None]
    if missing:
        return ('%s not found (Debian: apt-get install gcc-arm-none-eabi)'
                % ' and '.join(missing))
    return None


def qemu_missing():
    if shutil.which(QEMU) is None:
        return '%s not found (Debian: apt-get install qemu-system-arm)' % QEMU
    return None


def _check(command, cwd, what, timeout=600):
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                                timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise FirmwareError('%s: %s' % (what, error))
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        useful = [line for line in message if line.strip() and 'collect2' not in line]
        detail = next((line for line in useful if 'error' in line.lower()),
                      useful[0] if useful else 'exit status %d' % result.returncode)
        raise FirmwareError('%s failed: %s' % (what, detail.strip()))
    return result.stdout


class Build:
    """A built firmware and its sizes as ``arm-none-eabi-size`` reports them.

    Attributes
    ----------
    elf : str
    text, data, bss : int
        The ELF's Berkeley sizes (bss includes the stack).
    flash_bytes : int
        ``text + data`` (code, constants and the initial values of data).
    ram_bytes : int
        ``data + bss``.
    model : dict
        Section sizes of the model's object ``PREFIX.o`` summed by kind:
        ``'rodata'`` (its constant data), ``'text'`` (its code), ``'bss'``
        (its static buffers) and ``'data'``.
    commands : list of list of str
    """

    def __init__(self, elf, text, data, bss, model, commands):
        self.elf = elf
        self.text, self.data, self.bss = text, data, bss
        self.model = model
        self.commands = commands

    @property
    def flash_bytes(self):
        return self.text + self.data

    @property
    def ram_bytes(self):
        return self.data + self.bss


def berkeley_sizes(path, cwd=None):
    """(text, data, bss) of an object or ELF file, from ``arm-none-eabi-size``."""
    out = _check([SIZE, path], cwd, SIZE)
    fields = out.strip().splitlines()[-1].split()
    return int(fields[0]), int(fields[1]), int(fields[2])


def section_sizes(path, cwd=None):
    """Bytes per kind ('text', 'rodata', 'data', 'bss') of an object's sections
    (``arm-none-eabi-size -A``; -ffunction-sections gives one per symbol)."""
    out = _check([SIZE, '-A', path], cwd, SIZE)
    kinds = {'text': 0, 'rodata': 0, 'data': 0, 'bss': 0}
    for line in out.splitlines():
        match = re.match(r'^\.(text|rodata|data|bss)(\.\S*)?\s+(\d+)\s', line)
        if match:
            kinds[match.group(1)] += int(match.group(3))
    return kinds


def build(directory, name, target, popcount, flash_limit=None, ram_limit=None,
          variant='', stack_bytes=STACK_BYTES):
    """Compile and link the firmware written into ``directory``.

    Parameters
    ----------
    directory : str
        Holds the model's C files and :func:`generate_sources`' files.
    name : str
        The model's C prefix.
    target : str
        A key of :data:`TARGETS`.
    popcount : str
        'builtin', 'swar' or 'table' (``-DBN_POPCOUNT=...``).
    flash_limit, ram_limit : int, optional
        Fail (:class:`FirmwareError`) unless flash and RAM fit these bytes.
    variant : str
        Appended (after ``_``) to the names of the objects and of the firmware
        ``PREFIX.elf``, to keep builds with other options apart.
    stack_bytes : int

    Returns
    -------
    Build
    """
    missing = toolchain_missing()
    if missing:
        raise FirmwareError(missing)
    cpu = TARGETS[target][0]
    suffix = '_' + variant if variant else ''
    elf = name + suffix + '.elf'
    cflags = ['-mcpu=' + cpu] + CFLAGS + ['-DBN_POPCOUNT=BN_POPCOUNT_' + popcount.upper()]
    commands, objs = [], []
    for source, obj in zip(_sources(name), objects(name)):
        obj = obj[:-2] + suffix + '.o'
        commands.append([CC] + cflags + ['-c', '-o', obj, source])
        objs.append(obj)
    ldflags = ['-mcpu=' + cpu] + LDFLAGS + ['-Wl,--defsym=__stack_size=%d' % stack_bytes]
    if flash_limit is not None:
        ldflags.append('-Wl,--defsym=__flash_limit=%d' % flash_limit)
    if ram_limit is not None:
        ldflags.append('-Wl,--defsym=__ram_limit=%d' % ram_limit)
    commands.append([CC] + ldflags + ['-o', elf] + objs + LIBS)
    for command in commands:
        _check(command, directory, 'building %s'
               % os.path.join(directory, command[command.index('-o') + 1]))
    text, data, bss = berkeley_sizes(elf, directory)
    return Build(os.path.join(directory, elf), text, data, bss,
                 section_sizes(objs[0], directory), commands)


def fitting_parts(target, flash_bytes, ram_bytes):
    """The :data:`PARTS` of the target's core with at least this much memory."""
    return [part for part in PARTS if part[1] == target
            and part[2] >= flash_bytes and part[3] >= ram_bytes]


def qemu_command(elf, target, images, output=None, icount=True):
    """The qemu-system-arm command line running ``elf`` on raw image file ``images``."""
    board = TARGETS[target][1]
    flags = QEMU_FLAGS if icount else [f for f in QEMU_FLAGS if f not in ('-icount', 'shift=0')]
    args = ['arg=' + os.path.basename(elf), 'arg=' + images] + (['arg=' + output]
                                                                 if output else [])
    return [QEMU, '-M', board] + flags + [
        '-semihosting-config', 'enable=on,target=native,' + ','.join(args), '-kernel', elf]


class Emulation:
    """What a firmware printed under QEMU.

    Attributes
    ----------
    labels : ndarray of int64, (N,)
    scores : ndarray of int64, (N, classes)
    predict_ticks, spin_ticks, spin_instructions : int
        The firmware's SysTick counts (see ``PREFIX_firmware.c``).
    instructions_per_inference : float
        ``predict_ticks / N * spin_instructions / spin_ticks``: with -icount
        shift=0 ticks are proportional to instructions (exact up to a tick,
        a few dozen instructions, per measurement).
    seconds : float
        Wall-clock time of the emulation.
    """

    def __init__(self, labels, scores, stats, seconds):
        self.labels, self.scores = labels, scores
        self.predict_ticks = stats['predict_ticks']
        self.spin_ticks = stats['spin_ticks']
        self.spin_instructions = stats['spin_instructions']
        self.seconds = seconds
        n = max(len(labels), 1)
        self.instructions_per_inference = (self.predict_ticks / n * self.spin_instructions
                                           / max(self.spin_ticks, 1))


def run_qemu(elf, target, codes, timeout=600, icount=True):
    """Run a firmware under qemu-system-arm on int8 input codes (N x input size).

    Returns
    -------
    Emulation
    """
    import time

    missing = qemu_missing()
    if missing:
        raise FirmwareError(missing)
    codes = np.ascontiguousarray(codes, dtype=np.int8)
    directory = os.path.dirname(os.path.abspath(elf))
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        images = os.path.join(os.path.basename(tmp), 'images.bin')
        with open(os.path.join(directory, images), 'wb') as f:
            f.write(codes.tobytes())
        start = time.time()
        try:
            result = subprocess.run(qemu_command(os.path.basename(elf), target, images,
                                                 icount=icount),
                                    cwd=directory, capture_output=True, text=True,
                                    timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FirmwareError('%s did not finish within %d s' % (elf, timeout))
        seconds = time.time() - start
    if result.returncode != 0:
        raise FirmwareError('%s under %s: exit status %d: %s'
                            % (elf, QEMU, result.returncode,
                               (result.stderr + result.stdout).strip()[-500:]))
    rows, stats = [], None
    for line in result.stdout.splitlines():
        if line.startswith('# images'):
            words = line.split()[1:]
            stats = {k: int(v) for k, v in zip(words[::2], words[1::2])}
        elif line.strip():
            rows.append([int(v) for v in line.split()])
    if stats is None or stats['images'] != len(rows) or len(rows) != len(codes):
        raise FirmwareError('%s printed %d results for %d images' % (elf, len(rows), len(codes)))
    rows = np.array(rows, dtype=np.int64).reshape(len(rows), -1)
    return Emulation(rows[:, 0], rows[:, 1:], stats, seconds)

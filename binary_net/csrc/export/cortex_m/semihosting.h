/*
 * semihosting.h -- the few Arm semihosting calls the firmware needs, made
 * directly with "bkpt 0xAB" (no C library). Under QEMU
 * (-semihosting-config enable=on,target=native) files are the host's, ":tt" is
 * QEMU's standard output, and sh_exit() ends the emulation with a status.
 * On a real board a debugger (OpenOCD, pyOCD) serves the same calls.
 */
#ifndef BN_SEMIHOSTING_H
#define BN_SEMIHOSTING_H

#include <stddef.h>
#include <stdint.h>

#define SH_MODE_READ_BINARY 1
#define SH_MODE_WRITE 4

/* Open a host file; returns a handle, or -1. */
int sh_open(const char *path, int mode);
/* Read up to len bytes; returns the number read (0 at the end of the file). */
long sh_read(int handle, void *buffer, long len);
/* Write len bytes; returns 0 when all were written. */
int sh_write(int handle, const void *buffer, long len);
int sh_close(int handle);
/* The command line QEMU passes (its arg= options joined by spaces); returns 0 on success. */
int sh_cmdline(char *buffer, long len);
/* Write a NUL-terminated string to the debug console. */
void sh_puts(const char *text);
/* End the program (the emulation) with an exit status. */
void sh_exit(int status) __attribute__((noreturn));

#endif /* BN_SEMIHOSTING_H */

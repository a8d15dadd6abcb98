/*
 * semihosting.c -- Arm semihosting by "bkpt 0xAB" (Thumb): r0 holds the
 * operation, r1 a pointer to its argument block, r0 the result.
 */
#include "semihosting.h"

#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE0 0x04
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_STRLEN_MAX 0x7fffffff
#define SYS_GET_CMDLINE 0x15
#define SYS_EXIT 0x18
#define SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026

static long sh_call(long operation, const void *argument)
{
    register long r0 __asm__("r0") = operation;
    register const void *r1 __asm__("r1") = argument;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static long sh_strlen(const char *s)
{
    long n = 0;
    while (s[n] != '\0' && n < SYS_STRLEN_MAX)
        n++;
    return n;
}

int sh_open(const char *path, int mode)
{
    long block[3];
    block[0] = (long)path;
    block[1] = mode;
    block[2] = sh_strlen(path);
    return (int)sh_call(SYS_OPEN, block);
}

long sh_read(int handle, void *buffer, long len)
{
    long block[3];
    long left;
    block[0] = handle;
    block[1] = (long)buffer;
    block[2] = len;
    left = sh_call(SYS_READ, block);        /* the number of bytes NOT read */
    return left < 0 || left > len ? 0 : len - left;
}

int sh_write(int handle, const void *buffer, long len)
{
    long block[3];
    block[0] = handle;
    block[1] = (long)buffer;
    block[2] = len;
    return sh_call(SYS_WRITE, block) != 0;
}

int sh_close(int handle)
{
    long block[1];
    block[0] = handle;
    return (int)sh_call(SYS_CLOSE, block);
}

int sh_cmdline(char *buffer, long len)
{
    long block[2];
    block[0] = (long)buffer;
    block[1] = len;
    return (int)sh_call(SYS_GET_CMDLINE, block);
}

void sh_puts(const char *text)
{
    sh_call(SYS_WRITE0, text);
}

void sh_exit(int status)
{
    long block[2];
    block[0] = ADP_STOPPED_APPLICATION_EXIT;
    block[1] = status;
    sh_call(SYS_EXIT_EXTENDED, block);
    /* Hosts without SYS_EXIT_EXTENDED: a plain exit (status 0). */
    sh_call(SYS_EXIT, (const void *)ADP_STOPPED_APPLICATION_EXIT);
    for (;;)
        ;
}

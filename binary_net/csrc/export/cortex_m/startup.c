/*
 * startup.c -- minimal start-up for a Cortex-M (ARMv7-M) firmware, no C library:
 * the vector table, the reset handler (copy .data from flash, zero .bss, call
 * main, exit through semihosting), a fault handler that reports and exits with
 * status 3, a SysTick tick counter, and memcpy/memset (which the compiler may
 * call for struct copies and clears).
 *
 * The symbols come from the linker script (mps2.ld).
 */
#include <stddef.h>
#include <stdint.h>

#include "semihosting.h"
#include "timer.h"

/* Loops that must not become calls to memcpy/memset (those below included). */
#define BN_NO_LIBCALLS __attribute__((optimize("no-tree-loop-distribute-patterns")))

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _estack[];
int main(void);

void Reset_Handler(void) __attribute__((noreturn));
void Fault_Handler(void) __attribute__((noreturn));
void SysTick_Handler(void);

BN_NO_LIBCALLS void Reset_Handler(void)
{
    uint32_t *src = _sidata, *dst = _sdata;
    while (dst < _edata)
        *dst++ = *src++;
    for (dst = _sbss; dst < _ebss; dst++)
        *dst = 0;
    sh_exit(main());
}

void Fault_Handler(void)
{
    sh_puts("firmware: fault (HardFault, MemManage, BusFault or UsageFault)\n");
    sh_exit(3);
}

/* ARMv7-M vector table: initial stack pointer, then the 15 system exceptions
 * (no external interrupt is enabled). */
__attribute__((section(".isr_vector"), used))
static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)_estack,
    Reset_Handler,
    Fault_Handler,      /* NMI */
    Fault_Handler,      /* HardFault */
    Fault_Handler,      /* MemManage */
    Fault_Handler,      /* BusFault */
    Fault_Handler,      /* UsageFault */
    0, 0, 0, 0,
    Fault_Handler,      /* SVCall */
    Fault_Handler,      /* DebugMonitor */
    0,
    Fault_Handler,      /* PendSV */
    SysTick_Handler,
};

/* ---- SysTick: a 64-bit count of core clock ticks ------------------------- */

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYST_RELOAD 0x00ffffffu

static volatile uint32_t systick_wraps;

void SysTick_Handler(void)
{
    systick_wraps++;
}

void timer_start(void)
{
    SYST_CSR = 0;
    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0;
    systick_wraps = 0;
    SYST_CSR = 7;       /* processor clock, interrupt on wrap, enabled */
    while (SYST_CVR == 0)
        ;               /* until the first reload */
}

uint64_t timer_ticks(void)
{
    uint32_t wraps, value;
    do {
        wraps = systick_wraps;
        value = SYST_CVR;
    } while (wraps != systick_wraps);
    return (uint64_t)wraps * (SYST_RELOAD + 1u) + (SYST_RELOAD - value);
}

void timer_spin(uint32_t iterations)
{
    /* Exactly 2 instructions per iteration: subs, bne. */
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(iterations) : : "cc");
}

/* ---- What the compiler may call ------------------------------------------ */

BN_NO_LIBCALLS void *memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

BN_NO_LIBCALLS void *memset(void *dst, int value, size_t n)
{
    unsigned char *d = dst;
    while (n--)
        *d++ = (unsigned char)value;
    return dst;
}

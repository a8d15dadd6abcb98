/*
 * timer.h -- counting time on the core clock with SysTick (startup.c).
 * Under QEMU with -icount shift=0 every instruction advances the virtual clock
 * by exactly 1 ns, so ticks are proportional to instructions executed; the
 * firmware measures the ratio with timer_spin(), a loop of known length.
 */
#ifndef BN_TIMER_H
#define BN_TIMER_H

#include <stdint.h>

void timer_start(void);
/* Core clock ticks since timer_start(). */
uint64_t timer_ticks(void);
/* Execute exactly 2 * iterations instructions (iterations >= 1). */
void timer_spin(uint32_t iterations);

#endif /* BN_TIMER_H */

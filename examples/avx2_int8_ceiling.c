/* How fast one core runs nindsl's AVX2 int8 step when nothing else is in the way: the step of
 * nindsl/tvm/int8_kernels.py (2 vpmaddubsw + vpaddw + vpmaddwd + vpaddd per 64 multiply-adds),
 * six accumulators as a (6, 1) register block keeps them, the weights read from L1 as memory
 * operands, the two input broadcasts loaded each step. A kernel's GMAC/s per core (run it with
 * TVM_NUM_THREADS=1) is measured against this, not against the instruction tables' bound.
 *
 *   gcc -O2 examples/avx2_int8_ceiling.c -o /tmp/ceiling && /tmp/ceiling
 */
#include <stdio.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static char weights[16384] __attribute__((aligned(64)));

/* one 64-multiply-add step into accumulator A with temporaries T and U; ymm14/ymm13 hold the two
 * 4-channel broadcasts, ymm15 the 16-bit ones, (%rdx) the weights */
#define STEP(A, T, U, at)                                           \
  "vpmaddubsw " at "(%%rdx), %%ymm14, %%" T "\n"                     \
  "vpmaddubsw " at "+32(%%rdx), %%ymm13, %%" U "\n"                  \
  "vpaddw %%" T ", %%" U ", %%" T "\n"                               \
  "vpmaddwd %%ymm15, %%" T ", %%" T "\n"                             \
  "vpaddd %%" T ", %%" A ", %%" A "\n"

#define BODY                                                        \
  "vpbroadcastd (%%rdx), %%ymm14\n vpbroadcastd 4(%%rdx), %%ymm13\n" \
  STEP("ymm0", "ymm6", "ymm7", "0") STEP("ymm1", "ymm8", "ymm9", "64") \
  STEP("ymm2", "ymm10", "ymm11", "128") STEP("ymm3", "ymm6", "ymm7", "192") \
  STEP("ymm4", "ymm8", "ymm9", "256") STEP("ymm5", "ymm10", "ymm11", "320")

int main(void) {
  const long iterations = 10000000;
  double best = 0;
  __asm__ volatile("vpcmpeqw %%ymm15, %%ymm15, %%ymm15\n vpsrlw $15, %%ymm15, %%ymm15" ::: "xmm15");
  for (int round = 0; round < 10; round++) {
    double start = now();
    __asm__ volatile("mov %0, %%rcx\n mov %1, %%rdx\n 1:\n" BODY "dec %%rcx\n jnz 1b\n"
                     :: "r"(iterations), "r"(weights)
                     : "rcx", "rdx", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5",
                       "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm13", "xmm14");
    double rate = iterations * 6 * 64.0 / (now() - start) / 1e9;
    if (rate > best) best = rate;
  }
  printf("AVX2 int8 step, one core: %.1f GMAC/s (best of 10 rounds)\n", best);
  return 0;
}

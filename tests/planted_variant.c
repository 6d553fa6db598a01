/* A llama.cpp CPU variant that ggml ranks above every real one and that dies the moment it is used,
   like a variant whose instructions this CPU (or its OS) does not provide: on x86 a real illegal
   instruction (ud2), elsewhere the same signal. */
#include <signal.h>

int ggml_backend_score(void) { return 1 << 20; }

void *ggml_backend_init(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_trap();
#else
    raise(SIGILL);
#endif
    return 0;
}

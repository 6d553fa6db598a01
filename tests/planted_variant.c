/* A llama.cpp CPU variant that ggml ranks above every real one and that dies the moment it is used:
   __builtin_trap() is ud2 on x86, i.e. SIGILL, like an instruction this CPU does not have. */
int ggml_backend_score(void) { return 1 << 20; }

void *ggml_backend_init(void) {
    __builtin_trap();
    return 0;
}

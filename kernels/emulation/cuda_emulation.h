// CPU emulation of the CUDA C that fastconv's kernels use, for running kernels/*.cu on the CPU.
//
// The loader (fastconv/backends/cupy_backend/emulation.py) compiles a .cu file as C++20 with g++
// and `-include` of this header, then calls the generated launch entry points through ctypes on
// NumPy buffers. The model:
//
// * Blocks run one at a time; `__shared__` is `static` (one block at a time, so one copy is
//   enough; as on a GPU its content is undefined at the start of a block).
// * Each CUDA thread of a block is a thread of execution of its own, scheduled in one of two ways:
//   - FC_EMU_THREADS defined (the sanitizer builds): one OS thread per CUDA thread, created once
//     per launch and reused for every block; `__syncthreads()` is a std::barrier and atomics are
//     std::atomic_ref, so ThreadSanitizer sees a missing `__syncthreads()` as a data race on the
//     shared-memory line, and AddressSanitizer checks every thread's accesses.
//   - otherwise (the default): one fiber per CUDA thread, all on the calling OS thread; each
//     runs until its next `__syncthreads()` or its end, then the next one. A fiber switch costs
//     nanoseconds (a few instructions on x86-64; ucontext elsewhere, or with FC_EMU_UCONTEXT)
//     where waking OS threads at a barrier costs tens of microseconds or more on a busy machine
//     (a tiled GEMM has two barriers per depth step), and a missing `__syncthreads()` reliably
//     reads stale shared memory, since every thread runs to its next barrier before the next
//     thread starts.
//   In both, a thread whose kernel returned no longer holds the block back at a barrier, as an
//   exited thread on a GPU.
// * threadIdx and blockIdx are thread_local (set by the scheduler); blockDim and gridDim are set
//   before the block's threads start.
//
// Supported: the execution-space qualifiers, __restrict__, __forceinline__, __launch_bounds__,
// static __shared__ arrays, __syncthreads, __threadfence, atomicAdd/Sub/Max/Min/Exch/CAS, the C
// math functions plus rsqrtf/rsqrt and min/max overloads, __ldg. Not supported (compile errors):
// `extern __shared__`, warp intrinsics, textures, streams inside kernels.
#pragma once

// -- qualifiers --------------------------------------------------------------------------------
#ifdef FC_EMU_PREPROCESS
// The loader preprocesses a source once to find its kernels: __global__ stays visible there.
#define __global__ __fc_emu_global__
#else
#define __global__
#endif
#define __device__
#define __host__
#define __shared__ static
#define __constant__ static const
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
// __restrict__ is a g++ keyword already.

#define threadIdx (::fc_emu::thread_idx)
#define blockIdx (::fc_emu::block_idx)
#define blockDim (static_cast<const dim3&>(::fc_emu::block_dim))
#define gridDim (static_cast<const dim3&>(::fc_emu::grid_dim))

#ifndef FC_EMU_PREPROCESS
#include <algorithm>
#include <array>
#include <atomic>
#include <barrier>
#include <cassert>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>
#include <math.h>
#if !defined(FC_EMU_THREADS) && (!defined(__x86_64__) || defined(FC_EMU_UCONTEXT))
#include <ucontext.h>
#endif

// after the standard headers: libstdc++ itself writes __attribute__((__noinline__))
#define __noinline__ __attribute__((noinline))

// -- built-in variables ------------------------------------------------------------------------
struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1)
        : x(x_), y(y_), z(z_) {}
};

namespace fc_emu {
inline thread_local uint3 thread_idx{0, 0, 0};
inline thread_local uint3 block_idx{0, 0, 0};
inline dim3 block_dim;
inline dim3 grid_dim;
#ifdef FC_EMU_THREADS
// The barrier of the block now running; replaced between blocks by the grid's end-of-block
// barrier (see run_grid()).
inline std::barrier<>* block_barrier = nullptr;
#else
// Fibers: a saved execution context each, switched by switch_fiber(from, to).
#if defined(__x86_64__) && !defined(FC_EMU_UCONTEXT)
// x86-64: the callee-saved registers, the SSE and x87 control words and the stack pointer; no
// system call (ucontext's swapcontext makes one to save the signal mask, which cost about 0.6 us
// per switch here, and tiled kernels switch twice per depth step).
struct fiber_context {
    void* sp = nullptr;
};
extern "C" __attribute__((visibility("hidden"))) void fc_emu_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .p2align 4
    .globl fc_emu_switch
    .hidden fc_emu_switch
    .type fc_emu_switch, @function
fc_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size fc_emu_switch, .-fc_emu_switch
)");
inline void switch_fiber(fiber_context& from, fiber_context& to) { fc_emu_switch(&from.sp, to.sp); }
// A context that starts `entry` (which must never return) on the stack [stack, stack + size).
inline void make_fiber(fiber_context& f, char* stack, std::size_t size, void (*entry)()) {
    auto top = (reinterpret_cast<std::uintptr_t>(stack + size)) & ~std::uintptr_t(15);
    void** sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;                          // entry's return address: it never returns
    *--sp = reinterpret_cast<void*>(entry);   // where fc_emu_switch's ret goes
    for (int i = 0; i < 6; ++i) *--sp = nullptr;  // rbp, rbx, r12-r15
    --sp;                                     // the control words, the caller's
    auto* words = reinterpret_cast<std::uint32_t*>(sp);
    __asm__ volatile("stmxcsr %0" : "=m"(words[0]));
    __asm__ volatile("fnstcw %0" : "=m"(*reinterpret_cast<std::uint16_t*>(&words[1])));
    f.sp = sp;
}
#else
struct fiber_context {
    ucontext_t uc;
};
inline void switch_fiber(fiber_context& from, fiber_context& to) { swapcontext(&from.uc, &to.uc); }
inline void make_fiber(fiber_context& f, char* stack, std::size_t size, void (*entry)()) {
    getcontext(&f.uc);
    f.uc.uc_stack.ss_sp = stack;
    f.uc.uc_stack.ss_size = size;
    f.uc.uc_link = nullptr;
    makecontext(&f.uc, entry, 0);
}
#endif
// The scheduler's context and the running fiber's (see run_grid()).
inline fiber_context scheduler;
inline fiber_context* running = nullptr;
// set when the running fiber's kernel returned (rather than stopping at a __syncthreads)
inline bool finished = false;
#endif
}  // namespace fc_emu

constexpr int warpSize = 32;

// -- synchronisation ---------------------------------------------------------------------------
#ifdef FC_EMU_THREADS
inline void __syncthreads() { ::fc_emu::block_barrier->arrive_and_wait(); }
#else
inline void __syncthreads() { ::fc_emu::switch_fiber(*::fc_emu::running, ::fc_emu::scheduler); }
#endif
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// -- atomics (return the old value, as CUDA's) -------------------------------------------------
template <class T>
inline T atomicAdd(T* address, T val) {
    return std::atomic_ref<T>(*address).fetch_add(val);
}
template <class T>
inline T atomicSub(T* address, T val) {
    return std::atomic_ref<T>(*address).fetch_sub(val);
}
template <class T>
inline T atomicExch(T* address, T val) {
    return std::atomic_ref<T>(*address).exchange(val);
}
template <class T>
inline T atomicCAS(T* address, T compare, T val) {
    std::atomic_ref<T>(*address).compare_exchange_strong(compare, val);
    return compare;
}
template <class T>
inline T atomicMax(T* address, T val) {
    std::atomic_ref<T> ref(*address);
    T old = ref.load();
    while (old < val && !ref.compare_exchange_weak(old, val)) {
    }
    return old;
}
template <class T>
inline T atomicMin(T* address, T val) {
    std::atomic_ref<T> ref(*address);
    T old = ref.load();
    while (val < old && !ref.compare_exchange_weak(old, val)) {
    }
    return old;
}

// -- math beyond the C library -----------------------------------------------------------------
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return fminf(fmaxf(x, 0.0f), 1.0f); }
template <class T>
inline T __ldg(const T* p) { return *p; }

// CUDA's device min/max: overloads in the global namespace, mixed signedness included (it
// compares as unsigned, as CUDA's do), and float/double mixes (compared as double).
#define FC_EMU_MINMAX(R, A, B)                                                    \
    inline R min(A a, B b) { return static_cast<R>(a) < static_cast<R>(b) ? a : b; } \
    inline R max(A a, B b) { return static_cast<R>(a) > static_cast<R>(b) ? a : b; }
FC_EMU_MINMAX(int, int, int)
FC_EMU_MINMAX(unsigned int, unsigned int, unsigned int)
FC_EMU_MINMAX(unsigned int, int, unsigned int)
FC_EMU_MINMAX(unsigned int, unsigned int, int)
FC_EMU_MINMAX(long, long, long)
FC_EMU_MINMAX(unsigned long, unsigned long, unsigned long)
FC_EMU_MINMAX(long long, long long, long long)
FC_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
FC_EMU_MINMAX(unsigned long long, long long, unsigned long long)
FC_EMU_MINMAX(unsigned long long, unsigned long long, long long)
#undef FC_EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }

// -- launching ---------------------------------------------------------------------------------
namespace fc_emu {

// One letter per argument type, checked by the Python side before a launch: 'f' float,
// 'd' double, 'i' int, 'I' unsigned int, 'q' long long, 'Q' unsigned long long, '?' another
// type; pointers are 'P' followed by the pointee's letter. Built at compile time.
template <class T>
constexpr char base_code() {
    using U = std::remove_cv_t<std::remove_pointer_t<std::remove_cv_t<T>>>;
    if constexpr (std::is_same_v<U, float>) return 'f';
    else if constexpr (std::is_same_v<U, double>) return 'd';
    else if constexpr (std::is_same_v<U, int>) return 'i';
    else if constexpr (std::is_same_v<U, unsigned int>) return 'I';
    else if constexpr (std::is_same_v<U, long long> || std::is_same_v<U, long>) return 'q';
    else if constexpr (std::is_same_v<U, unsigned long long> ||
                       std::is_same_v<U, unsigned long>) return 'Q';
    else return '?';
}

template <class... A>
struct signature_of {
    static constexpr std::array<char, 3 * sizeof...(A) + 1> value = [] {
        std::array<char, 3 * sizeof...(A) + 1> out{};
        std::size_t i = 0;
        ((std::is_pointer_v<std::remove_cv_t<A>> ? (out[i++] = 'P') : 0,
          out[i++] = base_code<A>(), out[i++] = ','),
         ...);
        return out;
    }();
};

template <class... A>
constexpr std::size_t signature_size(void (*)(A...)) {
    return sizeof...(A);
}

template <class... A>
const char* signature(void (*)(A...)) {
    return signature_of<A...>::value.data();
}

template <class... A, std::size_t... I>
void call(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<A>*>(args[I])...);
}

// The kernel K called on its packed arguments: the one piece of launch code made per kernel.
template <auto K>
void thunk(void** args) {
    call(K, args, std::make_index_sequence<signature_size(K)>{});
}

// Runs the grid: a function, not a template, so that a source's kernels share one copy.
#ifdef FC_EMU_THREADS
// One OS thread per CUDA thread of a block, every block in turn.
inline void run_grid(void (*body)(void**), void** args, const unsigned int* grid,
                     const unsigned int* block) {
    grid_dim = dim3(grid[0], grid[1], grid[2]);
    block_dim = dim3(block[0], block[1], block[2]);
    const std::size_t nthreads = std::size_t(block[0]) * block[1] * block[2];
    const std::size_t nblocks = std::size_t(grid[0]) * grid[1] * grid[2];
    if (nthreads == 0 || nblocks == 0) return;

    // block_barrier serves the block's __syncthreads; end_of_block holds every thread until all
    // finished the block, then its completion step (run by one thread while the others wait)
    // gives the next block a fresh block barrier, since threads that returned dropped out of
    // the old one.
    std::unique_ptr<std::barrier<>> current =
        std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(nthreads));
    block_barrier = current.get();
    auto renew = [&]() noexcept {
        current = std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(nthreads));
        block_barrier = current.get();
    };
    std::barrier end_of_block(static_cast<std::ptrdiff_t>(nthreads), renew);

    auto worker = [&](unsigned int tx, unsigned int ty, unsigned int tz) {
        thread_idx = uint3{tx, ty, tz};
        for (std::size_t b = 0; b < nblocks; ++b) {
            block_idx = uint3{static_cast<unsigned int>(b % grid[0]),
                              static_cast<unsigned int>((b / grid[0]) % grid[1]),
                              static_cast<unsigned int>(b / (std::size_t(grid[0]) * grid[1]))};
            body(args);
            block_barrier->arrive_and_drop();
            end_of_block.arrive_and_wait();
        }
    };

    std::vector<std::thread> threads;
    threads.reserve(nthreads);
    for (unsigned int z = 0; z < block[2]; ++z)
        for (unsigned int y = 0; y < block[1]; ++y)
            for (unsigned int x = 0; x < block[0]; ++x) threads.emplace_back(worker, x, y, z);
    for (auto& t : threads) t.join();
    block_barrier = nullptr;
}
#else
// One fiber per CUDA thread of a block, every block in turn, on the calling thread.
inline void (*fiber_body)(void**) = nullptr;
inline void** fiber_args = nullptr;
inline void fiber_main() {
    fiber_body(fiber_args);
    finished = true;
    switch_fiber(*running, scheduler);  // never resumed
    __builtin_unreachable();
}

constexpr std::size_t fiber_stack_size = 256 * 1024;
// Fiber stacks, kept from launch to launch (memory untouched by a kernel is never committed).
inline std::vector<std::unique_ptr<char[]>> fiber_stacks;

inline void run_grid(void (*body)(void**), void** args, const unsigned int* grid,
                     const unsigned int* block) {
    grid_dim = dim3(grid[0], grid[1], grid[2]);
    block_dim = dim3(block[0], block[1], block[2]);
    const std::size_t nthreads = std::size_t(block[0]) * block[1] * block[2];
    const std::size_t nblocks = std::size_t(grid[0]) * grid[1] * grid[2];
    if (nthreads == 0 || nblocks == 0) return;
    while (fiber_stacks.size() < nthreads)
        fiber_stacks.emplace_back(new char[fiber_stack_size]);
    fiber_body = body;
    fiber_args = args;
    std::vector<fiber_context> fibers(nthreads);
    std::vector<char> done(nthreads);
    for (std::size_t b = 0; b < nblocks; ++b) {
        block_idx = uint3{static_cast<unsigned int>(b % grid[0]),
                          static_cast<unsigned int>((b / grid[0]) % grid[1]),
                          static_cast<unsigned int>(b / (std::size_t(grid[0]) * grid[1]))};
        for (std::size_t t = 0; t < nthreads; ++t) {
            make_fiber(fibers[t], fiber_stacks[t].get(), fiber_stack_size, fiber_main);
            done[t] = 0;
        }
        // Rounds: every live thread runs to its next __syncthreads (or its end); a round ends
        // with all of them at the same barrier, which the next round releases.
        for (std::size_t alive = nthreads; alive > 0;) {
            for (std::size_t t = 0; t < nthreads; ++t) {
                if (done[t]) continue;
                thread_idx = uint3{static_cast<unsigned int>(t % block[0]),
                                   static_cast<unsigned int>((t / block[0]) % block[1]),
                                   static_cast<unsigned int>(t / (std::size_t(block[0]) *
                                                                  block[1]))};
                running = &fibers[t];
                finished = false;
                switch_fiber(scheduler, fibers[t]);
                if (finished) {
                    done[t] = 1;
                    --alive;
                }
            }
        }
    }
    running = nullptr;
}
#endif

}  // namespace fc_emu
#endif  // FC_EMU_PREPROCESS

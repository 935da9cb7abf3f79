//! The real functions behind the interposers, found with
//! `dlsym(RTLD_NEXT, name)` (the definitions that come after the agent in
//! the lookup order, i.e. glibc's) and cached in one atomic per function.
//!
//! Each `real::f(args)` has the C signature of `f`: it resolves `f` on its
//! first call (any thread may race to resolve it; they all store the same
//! value) and calls it. If the symbol cannot be found, the call reports
//! `ENOSYS` the way the function reports errors, instead of crashing.
//!
//! glibc versions the condition-variable functions: `pthread_cond_*@GLIBC_2.2.5`
//! are the old LinuxThreads-compatible ones and `@@GLIBC_2.3.2` the current
//! ones, which plain `dlsym` may not return. They are looked up with
//! `dlvsym(RTLD_NEXT, name, "GLIBC_2.3.2")`, falling back to `dlsym`.
//!
//! The pointers are plain `extern "C"`, never `"C-unwind"`, although
//! cancellation points and `pthread_exit` do unwind through their callers:
//! see [`record`](crate::record) for why.

use core::sync::atomic::{AtomicUsize, Ordering};

use libc::{
    c_char, c_int, c_uint, c_void, mode_t, pthread_attr_t, pthread_barrier_t,
    pthread_barrierattr_t, pthread_cond_t, pthread_condattr_t, pthread_mutex_t,
    pthread_mutexattr_t, pthread_once_t, pthread_rwlock_t, pthread_rwlockattr_t,
    pthread_spinlock_t, pthread_t, sched_param, sem_t, timespec,
};

/// Resolves `name` (NUL-terminated), preferring symbol version `version`.
#[cold]
fn lookup(name: &'static [u8], version: Option<&'static [u8]>) -> usize {
    let mut p = core::ptr::null_mut();
    if let Some(version) = version {
        // SAFETY: both strings are NUL-terminated literals; dlvsym only
        // reads them and the loader's tables.
        p = unsafe {
            libc::dlvsym(
                libc::RTLD_NEXT,
                name.as_ptr().cast(),
                version.as_ptr().cast(),
            )
        };
    }
    if p.is_null() {
        // SAFETY: as above.
        p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) };
    }
    p as usize
}

/// Sets errno to ENOSYS and returns -1 (the sem_* way of failing).
fn enosys_errno() -> c_int {
    crate::record::set_errno(libc::ENOSYS);
    -1
}

macro_rules! real {
    ($(
        $(#[version = $ver:literal])?
        fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty, else $missing:expr;
    )*) => {$(
        #[doc = concat!("Calls the real `", stringify!($name), "`.")]
        #[inline(always)]
        #[allow(clippy::missing_safety_doc)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            static ADDR: AtomicUsize = AtomicUsize::new(0);
            let mut addr = ADDR.load(Ordering::Relaxed);
            if addr == 0 {
                #[allow(unused_mut, unused_assignments)]
                let mut version: Option<&'static [u8]> = None;
                $(version = Some(concat!($ver, "\0").as_bytes());)?
                addr = lookup(concat!(stringify!($name), "\0").as_bytes(), version);
                if addr == 0 {
                    return $missing;
                }
                ADDR.store(addr, Ordering::Relaxed);
            }
            // SAFETY: `addr` is the address of the C function `$name`, whose
            // signature is the one declared here.
            let f: unsafe extern "C" fn($($ty),*) -> $ret = unsafe { core::mem::transmute(addr) };
            // SAFETY: the caller passes the arguments its own caller gave to
            // the interposer of the same C signature.
            unsafe { f($($arg),*) }
        }
    )*};
}

const ENOSYS: c_int = libc::ENOSYS;

real! {
    fn pthread_mutex_init(m: *mut pthread_mutex_t, a: *const pthread_mutexattr_t) -> c_int, else ENOSYS;
    fn pthread_mutex_lock(m: *mut pthread_mutex_t) -> c_int, else ENOSYS;
    fn pthread_mutex_trylock(m: *mut pthread_mutex_t) -> c_int, else ENOSYS;
    fn pthread_mutex_timedlock(m: *mut pthread_mutex_t, t: *const timespec) -> c_int, else ENOSYS;
    fn pthread_mutex_unlock(m: *mut pthread_mutex_t) -> c_int, else ENOSYS;
    fn pthread_mutex_destroy(m: *mut pthread_mutex_t) -> c_int, else ENOSYS;
    fn pthread_mutex_consistent(m: *mut pthread_mutex_t) -> c_int, else ENOSYS;
    fn pthread_mutexattr_gettype(a: *const pthread_mutexattr_t, v: *mut c_int) -> c_int, else ENOSYS;
    fn pthread_mutexattr_getprotocol(a: *const pthread_mutexattr_t, v: *mut c_int) -> c_int, else ENOSYS;
    fn pthread_mutexattr_settype(a: *mut pthread_mutexattr_t, v: c_int) -> c_int, else ENOSYS;
    fn pthread_mutexattr_setprotocol(a: *mut pthread_mutexattr_t, v: c_int) -> c_int, else ENOSYS;
    fn pthread_mutexattr_setprioceiling(a: *mut pthread_mutexattr_t, v: c_int) -> c_int, else ENOSYS;
    fn pthread_mutexattr_setrobust(a: *mut pthread_mutexattr_t, v: c_int) -> c_int, else ENOSYS;

    fn pthread_rwlock_init(l: *mut pthread_rwlock_t, a: *const pthread_rwlockattr_t) -> c_int, else ENOSYS;
    fn pthread_rwlock_rdlock(l: *mut pthread_rwlock_t) -> c_int, else ENOSYS;
    fn pthread_rwlock_wrlock(l: *mut pthread_rwlock_t) -> c_int, else ENOSYS;
    fn pthread_rwlock_tryrdlock(l: *mut pthread_rwlock_t) -> c_int, else ENOSYS;
    fn pthread_rwlock_trywrlock(l: *mut pthread_rwlock_t) -> c_int, else ENOSYS;
    fn pthread_rwlock_timedrdlock(l: *mut pthread_rwlock_t, t: *const timespec) -> c_int, else ENOSYS;
    fn pthread_rwlock_timedwrlock(l: *mut pthread_rwlock_t, t: *const timespec) -> c_int, else ENOSYS;
    fn pthread_rwlock_unlock(l: *mut pthread_rwlock_t) -> c_int, else ENOSYS;
    fn pthread_rwlock_destroy(l: *mut pthread_rwlock_t) -> c_int, else ENOSYS;

    #[version = "GLIBC_2.3.2"]
    fn pthread_cond_init(c: *mut pthread_cond_t, a: *const pthread_condattr_t) -> c_int, else ENOSYS;
    #[version = "GLIBC_2.3.2"]
    fn pthread_cond_wait(c: *mut pthread_cond_t, m: *mut pthread_mutex_t) -> c_int, else ENOSYS;
    #[version = "GLIBC_2.3.2"]
    fn pthread_cond_timedwait(c: *mut pthread_cond_t, m: *mut pthread_mutex_t, t: *const timespec) -> c_int, else ENOSYS;
    #[version = "GLIBC_2.3.2"]
    fn pthread_cond_signal(c: *mut pthread_cond_t) -> c_int, else ENOSYS;
    #[version = "GLIBC_2.3.2"]
    fn pthread_cond_broadcast(c: *mut pthread_cond_t) -> c_int, else ENOSYS;
    #[version = "GLIBC_2.3.2"]
    fn pthread_cond_destroy(c: *mut pthread_cond_t) -> c_int, else ENOSYS;

    fn sem_init(s: *mut sem_t, pshared: c_int, value: c_uint) -> c_int, else enosys_errno();
    fn sem_wait(s: *mut sem_t) -> c_int, else enosys_errno();
    fn sem_trywait(s: *mut sem_t) -> c_int, else enosys_errno();
    fn sem_timedwait(s: *mut sem_t, t: *const timespec) -> c_int, else enosys_errno();
    fn sem_post(s: *mut sem_t) -> c_int, else enosys_errno();
    fn sem_destroy(s: *mut sem_t) -> c_int, else enosys_errno();
    fn sem_close(s: *mut sem_t) -> c_int, else enosys_errno();

    fn pthread_spin_init(s: *mut pthread_spinlock_t, pshared: c_int) -> c_int, else ENOSYS;
    fn pthread_spin_lock(s: *mut pthread_spinlock_t) -> c_int, else ENOSYS;
    fn pthread_spin_trylock(s: *mut pthread_spinlock_t) -> c_int, else ENOSYS;
    fn pthread_spin_unlock(s: *mut pthread_spinlock_t) -> c_int, else ENOSYS;
    fn pthread_spin_destroy(s: *mut pthread_spinlock_t) -> c_int, else ENOSYS;

    fn pthread_barrier_init(b: *mut pthread_barrier_t, a: *const pthread_barrierattr_t, count: c_uint) -> c_int, else ENOSYS;
    fn pthread_barrier_wait(b: *mut pthread_barrier_t) -> c_int, else ENOSYS;
    fn pthread_barrier_destroy(b: *mut pthread_barrier_t) -> c_int, else ENOSYS;

    fn pthread_create(t: *mut pthread_t, a: *const pthread_attr_t, start: *mut c_void, arg: *mut c_void) -> c_int, else libc::EAGAIN;
    fn pthread_join(t: pthread_t, ret: *mut *mut c_void) -> c_int, else ENOSYS;
    fn pthread_detach(t: pthread_t) -> c_int, else ENOSYS;
    fn pthread_once(o: *mut pthread_once_t, init: *mut c_void) -> c_int, else ENOSYS;
    fn pthread_setschedparam(t: pthread_t, policy: c_int, p: *const sched_param) -> c_int, else ENOSYS;
    fn pthread_setschedprio(t: pthread_t, prio: c_int) -> c_int, else ENOSYS;
    fn pthread_attr_setschedparam(a: *mut pthread_attr_t, p: *const sched_param) -> c_int, else ENOSYS;
    fn pthread_attr_setschedpolicy(a: *mut pthread_attr_t, policy: c_int) -> c_int, else ENOSYS;
    fn pthread_attr_setinheritsched(a: *mut pthread_attr_t, inherit: c_int) -> c_int, else ENOSYS;
}

/// Calls the real `pthread_exit`; if it cannot be found, ends the thread
/// with the raw exit system call (no cleanup handlers, no TLS destructors).
pub unsafe extern "C" fn pthread_exit(value: *mut c_void) -> ! {
    static ADDR: AtomicUsize = AtomicUsize::new(0);
    let mut addr = ADDR.load(Ordering::Relaxed);
    if addr == 0 {
        addr = lookup(b"pthread_exit\0", None);
        ADDR.store(addr, Ordering::Relaxed);
    }
    if addr != 0 {
        // SAFETY: `addr` is glibc's pthread_exit, of this signature.
        let f: unsafe extern "C" fn(*mut c_void) -> ! = unsafe { core::mem::transmute(addr) };
        // SAFETY: forwards the interposer's argument.
        unsafe { f(value) }
    }
    loop {
        // SAFETY: ends the calling thread; touches no memory.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
    }
}

/// Calls the real variadic `sem_open`, always passing mode and value (they
/// are ignored by glibc unless `O_CREAT` is in `oflag`).
pub unsafe fn sem_open(
    name: *const c_char,
    oflag: c_int,
    mode: mode_t,
    value: c_uint,
) -> *mut sem_t {
    static ADDR: AtomicUsize = AtomicUsize::new(0);
    let mut addr = ADDR.load(Ordering::Relaxed);
    if addr == 0 {
        addr = lookup(b"sem_open\0", None);
        if addr == 0 {
            crate::record::set_errno(libc::ENOSYS);
            return libc::SEM_FAILED;
        }
        ADDR.store(addr, Ordering::Relaxed);
    }
    // SAFETY: `addr` is glibc's `sem_t *sem_open(const char *, int, ...)`.
    let f: unsafe extern "C" fn(*const c_char, c_int, ...) -> *mut sem_t =
        unsafe { core::mem::transmute(addr) };
    // SAFETY: forwards the caller's arguments; the variadic ones are
    // promoted C ints, as sem_open reads them with va_arg.
    unsafe { f(name, oflag, mode as c_uint, value) }
}

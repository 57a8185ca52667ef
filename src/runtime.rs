//! A thread's compio runtime: which driver, and how its io_uring is set up.
//!
//! Owns: the ring's set-up flags and the fallback between them. An io_uring ring is set up for
//! one thread (`IORING_SETUP_SINGLE_ISSUER`) that runs the completions' task work only when it
//! enters the ring to reap them (`IORING_SETUP_DEFER_TASKRUN`, Linux 6.1): the kernel then adds
//! no task work to the thread while it runs its own code, and reaps in batches. Where a kernel
//! refuses that set (before 6.1), the ring is set up as before it (`COOP_TASKRUN`: task work
//! waits for the thread's next system call, without an interrupt).
//! Must never: be called on one thread for a runtime another thread runs (a single-issuer ring
//! refuses every other thread's submissions: each worker, the health checker and each test build
//! their own on the thread that runs it), or fall back to epoll where io_uring was asked for and
//! the kernel has it.

use compio::driver::{DriverType, ProactorBuilder};
use compio::runtime::{Runtime, RuntimeBuilder};

use crate::config::Driver;

/// Builds this thread's runtime with the configured driver.
pub fn build(driver: Driver) -> std::io::Result<Runtime> {
    if driver != Driver::Epoll {
        // Asked for io_uring by name: a kernel that takes these flags has every operation ringlb
        // uses, so `Auto` would pick io_uring too.
        if let Ok(rt) = build_with(Some(DriverType::IoUring), true) {
            return Ok(rt);
        }
    }
    let ty = match driver {
        Driver::Auto => None,
        Driver::IoUring => Some(DriverType::IoUring),
        Driver::Epoll => Some(DriverType::Poll),
    };
    build_with(ty, false)
}

fn build_with(ty: Option<DriverType>, deferred: bool) -> std::io::Result<Runtime> {
    let mut proactor = ProactorBuilder::new();
    proactor
        .capacity(4096)
        .coop_taskrun(true)
        .taskrun_flag(true)
        .single_issuer(deferred)
        .defer_taskrun(deferred);
    if let Some(ty) = ty {
        proactor.driver_type(ty);
    }
    RuntimeBuilder::new().with_proactor(proactor).build()
}

/// The name of a runtime's driver, for the start-up log.
pub fn driver_name(rt: &Runtime) -> &'static str {
    match rt.driver_type() {
        DriverType::IoUring => "io_uring",
        DriverType::Poll => "epoll",
        DriverType::IOCP => "iocp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// What entering `ring` to reap (no submissions, no wait) gives on another thread.
    #[allow(unsafe_code)]
    fn reap_from_another_thread(ring: i32) -> std::io::Result<()> {
        std::thread::spawn(move || {
            const GETEVENTS: libc::c_long = 1;
            // SAFETY: io_uring_enter with nothing to submit and no argument pointer reads no
            // memory of this process; `ring` stays open (its runtime lives until the join).
            let r = unsafe { libc::syscall(libc::SYS_io_uring_enter, ring, 0, 0, GETEVENTS, 0, 0) };
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        })
        .join()
        .unwrap()
    }

    /// This kernel (6.1 or later) takes the deferred set: the ring runs its task work only for
    /// the thread that built it, and refuses another's (EEXIST). A ring set up the older way
    /// lets any thread reap.
    #[test]
    fn the_ring_is_set_up_for_its_own_thread_and_deferred_task_work() {
        for driver in [Driver::IoUring, Driver::Auto] {
            let rt = build(driver).unwrap();
            assert_eq!(driver_name(&rt), "io_uring");
            let refused = reap_from_another_thread(rt.as_raw_fd()).unwrap_err();
            assert_eq!(refused.raw_os_error(), Some(libc::EEXIST), "{driver:?}");
            // Its own thread runs I/O on it as before.
            rt.block_on(compio::time::sleep(std::time::Duration::from_millis(1)));
        }
        let older = build_with(Some(DriverType::IoUring), false).unwrap();
        reap_from_another_thread(older.as_raw_fd()).unwrap();
        let rt = build(Driver::Epoll).unwrap();
        assert_eq!(driver_name(&rt), "epoll");
    }
}

//! A thread's compio runtime: which driver, and how its io_uring is set up.
//!
//! Owns: the ring's set-up flags and the fallback between them. An io_uring ring is set up for
//! one thread (`IORING_SETUP_SINGLE_ISSUER`) that runs the completions' task work only when it
//! enters the ring to reap them (`IORING_SETUP_DEFER_TASKRUN`, Linux 6.1): the kernel then adds
//! no task work to the thread while it runs its own code, and reaps in batches. Where that set
//! is refused (a kernel before 6.1, or a ring that cannot be made at all), the ring is set up as
//! before it (`COOP_TASKRUN`: task work waits for the thread's next return from the kernel,
//! without an interrupt), once said in the log.
//! Must never: be called on one thread for a runtime another thread runs (a single-issuer ring
//! refuses every other thread's submissions, registrations and, deferred, its reaps: each worker,
//! the health checker and each test build their own on the thread that runs it), or fall back to
//! epoll where io_uring was asked for and the kernel has it.

use compio::driver::op::OpCodeFlag;
use compio::driver::{DriverType, ProactorBuilder};
use compio::runtime::{Runtime, RuntimeBuilder};

use crate::config::Driver;

/// Builds this thread's runtime with the configured driver.
pub fn build(driver: Driver) -> std::io::Result<Runtime> {
    if driver != Driver::Epoll {
        // io_uring named, for `Auto` too: compio would answer a refused flag with epoll, not with
        // the older flags. `Auto` keeps compio's check that the kernel has the basic operations
        // (what picks epoll for it otherwise), so a failed check means epoll below.
        match build_with(Some(DriverType::IoUring), true, driver == Driver::Auto) {
            Ok(rt) => return Ok(rt),
            Err(e) => say_refused(&e),
        }
    }
    let ty = match driver {
        Driver::Auto => None,
        Driver::IoUring => Some(DriverType::IoUring),
        Driver::Epoll => Some(DriverType::Poll),
    };
    build_with(ty, false, false)
}

fn build_with(ty: Option<DriverType>, deferred: bool, probe: bool) -> std::io::Result<Runtime> {
    // `taskrun_flag` must stay with `defer_taskrun`: deferred work is run only by an enter that
    // reaps (GETEVENTS), and compio's no-wait enters carry GETEVENTS only when the kernel's flag
    // says work is pending (io-uring 0.7.16's `submit_and_wait`: Cargo.toml asks for that
    // version or a later 0.7).
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
    if probe {
        proactor.detect_opcode_support(OpCodeFlag::basic());
    }
    RuntimeBuilder::new().with_proactor(proactor).build()
}

/// Logs, once per process, that the deferred set was refused and why.
fn say_refused(e: &std::io::Error) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::info!(
            "io_uring with deferred task work refused ({e}): rings are set up with cooperative \
             task work, or epoll where io_uring is unavailable"
        )
    });
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
            let (none, nothing) = (std::ptr::null::<libc::c_void>(), 0usize);
            // SAFETY: io_uring_enter(fd, to_submit 0, min_complete 0, GETEVENTS, NULL, 0) submits
            // nothing and reads no memory of this process; `ring` stays open (its runtime lives
            // until the join).
            let r = unsafe {
                let (fd, zero) = (libc::c_long::from(ring), 0 as libc::c_long);
                libc::syscall(
                    libc::SYS_io_uring_enter,
                    fd,
                    zero,
                    zero,
                    GETEVENTS,
                    none,
                    nothing,
                )
            };
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        })
        .join()
        .unwrap()
    }

    /// A kernel of 6.1 or later (this project's machines) takes the deferred set: the ring runs
    /// its task work only for the thread that built it, and refuses another's (EEXIST), whichever
    /// way io_uring was asked for. A ring set up the older way lets any thread reap; on an older
    /// kernel that is what `build` gives.
    #[test]
    fn the_ring_is_set_up_for_its_own_thread_and_deferred_task_work() {
        let older = build_with(Some(DriverType::IoUring), false, false).unwrap();
        reap_from_another_thread(older.as_raw_fd()).unwrap();
        let deferred_taken = build_with(Some(DriverType::IoUring), true, false).is_ok();
        for driver in [Driver::IoUring, Driver::Auto] {
            let rt = build(driver).unwrap();
            assert_eq!(driver_name(&rt), "io_uring");
            let reaped = reap_from_another_thread(rt.as_raw_fd());
            if deferred_taken {
                let refused = reaped.unwrap_err();
                assert_eq!(refused.raw_os_error(), Some(libc::EEXIST), "{driver:?}");
            } else {
                eprintln!("this kernel refuses deferred task work: the older set is checked");
                reaped.unwrap();
            }
            // Its own thread runs I/O on it as before.
            rt.block_on(compio::time::sleep(std::time::Duration::from_millis(1)));
        }
        let rt = build(Driver::Epoll).unwrap();
        assert_eq!(driver_name(&rt), "epoll");
    }
}

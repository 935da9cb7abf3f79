//! The kernel's scheduler tracepoints through `perf_event_open(2)`:
//! `sched:sched_switch` and `sched:sched_wakeup`, one pair of events per
//! CPU (pid −1: every task on that CPU; the caller filters the traced
//! ones), sampling every occurrence with PERF_SAMPLE_TID | TIME | CPU | RAW
//! on CLOCK_MONOTONIC (`use_clockid`), the trace's clock. The wakeup event
//! writes into the switch event's ring (PERF_EVENT_IOC_SET_OUTPUT), so a
//! CPU has one mmap'd ring that the recorder drains: no ptrace stop, no
//! syscall per event. Needs no PMU, only tracepoints (root or
//! CAP_PERFMON, `perf_event_paranoid` permitting).

use super::format::{Field, Formats};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// PERF_TYPE_TRACEPOINT.
const TYPE_TRACEPOINT: u32 = 2;
/// PERF_ATTR_SIZE_VER5: the fields up to `sample_max_stack`.
const ATTR_SIZE: u32 = 112;
const SAMPLE_TID: u64 = 1 << 1;
const SAMPLE_TIME: u64 = 1 << 2;
const SAMPLE_CPU: u64 = 1 << 7;
const SAMPLE_RAW: u64 = 1 << 10;
/// `flags` bits of perf_event_attr.
const FLAG_USE_CLOCKID: u64 = 1 << 25;
const FLAG_EXCLUDE_HV: u64 = 1 << 6;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// _IO('$', 5) and _IO('$', 0).
const IOC_SET_OUTPUT: libc::c_ulong = 0x2405;
const IOC_DISABLE: libc::c_ulong = 0x2401;
const RECORD_LOST: u32 = 2;
const RECORD_SAMPLE: u32 = 9;
/// perf_event_attr.watermark: `wakeup_events` counts bytes, not events.
const FLAG_WATERMARK: u64 = 1 << 14;
/// Data pages per CPU ring (a power of two): 512 KiB, ~5000 switches.
const RING_PAGES: usize = 128;

/// struct perf_event_attr up to PERF_ATTR_SIZE_VER5 (include/uapi/linux/perf_event.h).
#[repr(C)]
#[derive(Default)]
struct Attr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved_2: u16,
}

/// A raw tracepoint sample.
pub struct Sample<'a> {
    /// The thread running when it fired (prev for a switch, the waker for a wakeup).
    pub tid: i32,
    pub time: u64,
    pub cpu: u32,
    pub raw: &'a [u8],
}

/// One CPU's events and ring.
pub struct CpuRing {
    switch_fd: OwnedFd,
    _wakeup_fd: OwnedFd,
    base: *mut u8,
    len: usize,
    data_offset: usize,
    data_size: usize,
    /// Records lost by the kernel (ring full).
    pub lost: u64,
    scratch: Vec<u8>,
}

fn open_event(tracepoint: u64, cpu: u32) -> Result<OwnedFd, nix::errno::Errno> {
    let attr = Attr {
        type_: TYPE_TRACEPOINT,
        size: ATTR_SIZE,
        config: tracepoint,
        sample_period: 1,
        sample_type: SAMPLE_TID | SAMPLE_TIME | SAMPLE_CPU | SAMPLE_RAW,
        // Nobody polls the rings (they are drained at the recorder's
        // ticks): wake no one until half a ring is full, instead of an
        // irq_work per context switch.
        flags: FLAG_USE_CLOCKID | FLAG_EXCLUDE_HV | FLAG_WATERMARK,
        wakeup_events: (RING_PAGES * 4096 / 2) as u32,
        clockid: libc::CLOCK_MONOTONIC,
        ..Attr::default()
    };
    // SAFETY: perf_event_open reads `attr.size` bytes of a properly laid
    // out perf_event_attr that lives across the call; pid −1 with a CPU is
    // a per-CPU event.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const Attr,
            -1 as libc::pid_t,
            cpu as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl CpuRing {
    /// Opens the switch and wakeup events of `cpu` and maps their ring.
    pub fn open(formats: &Formats, cpu: u32) -> Result<CpuRing, (&'static str, nix::errno::Errno)> {
        let switch_fd = open_event(formats.switch_id, cpu).map_err(|e| ("perf_event_open", e))?;
        let wakeup_fd = open_event(formats.wakeup_id, cpu).map_err(|e| ("perf_event_open", e))?;
        // SAFETY: sysconf has no memory effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let len = page * (1 + RING_PAGES);
        // SAFETY: mapping a perf fd shared: the kernel provides the control
        // page and the data pages; the mapping lives until Drop.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                switch_fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(("mmap", nix::errno::Errno::last()));
        }
        // SAFETY: ioctl on two perf fds of ours on the same CPU.
        if unsafe { libc::ioctl(wakeup_fd.as_raw_fd(), IOC_SET_OUTPUT, switch_fd.as_raw_fd()) } < 0
        {
            let e = nix::errno::Errno::last();
            // SAFETY: unmapping what we just mapped.
            unsafe { libc::munmap(base, len) };
            return Err(("ioctl(PERF_EVENT_IOC_SET_OUTPUT)", e));
        }
        let base = base as *mut u8;
        // SAFETY: data_offset / data_size are u64 fields of the control
        // page at bytes 1040 and 1048 (0 on kernels older than 4.1).
        let (off, size) = unsafe {
            (
                std::ptr::read_volatile(base.add(1040) as *const u64) as usize,
                std::ptr::read_volatile(base.add(1048) as *const u64) as usize,
            )
        };
        let (data_offset, data_size) = if size == 0 {
            (page, page * RING_PAGES)
        } else {
            (off, size)
        };
        Ok(CpuRing {
            switch_fd,
            _wakeup_fd: wakeup_fd,
            base,
            len,
            data_offset,
            data_size,
            lost: 0,
            scratch: Vec::new(),
        })
    }

    /// Calls `f` for every sample written since the last drain, then frees
    /// their space in the ring.
    pub fn drain(&mut self, f: &mut dyn FnMut(Sample<'_>)) {
        // SAFETY: data_head (byte 1024) is written by the kernel; read it
        // once, then fence so the data it covers is visible (the
        // documented protocol: an acquire load of data_head).
        let head = unsafe { std::ptr::read_volatile(self.base.add(1024) as *const u64) };
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        // SAFETY: data_tail (byte 1032) is ours to read and write.
        let mut tail = unsafe { std::ptr::read_volatile(self.base.add(1032) as *const u64) };
        while tail + 8 <= head {
            let hdr = self.copy(tail, 8);
            let type_ = u32::from_ne_bytes(hdr[0..4].try_into().expect("4 bytes"));
            let size = u16::from_ne_bytes(hdr[6..8].try_into().expect("2 bytes")) as u64;
            if size < 8 || tail + size > head {
                break;
            }
            let rec = self.copy(tail, size as usize);
            match type_ {
                RECORD_SAMPLE => {
                    if let Some(s) = parse_sample(&rec) {
                        f(s)
                    }
                }
                RECORD_LOST if rec.len() >= 24 => {
                    self.lost += u64::from_ne_bytes(rec[16..24].try_into().expect("8 bytes"));
                }
                _ => {}
            }
            tail += size;
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        // SAFETY: publishing the new tail lets the kernel reuse the space.
        unsafe { std::ptr::write_volatile(self.base.add(1032) as *mut u64, tail) };
    }

    /// `len` bytes of the ring from position `pos`, unwrapped.
    fn copy(&mut self, pos: u64, len: usize) -> Vec<u8> {
        self.scratch.clear();
        let start = (pos as usize) % self.data_size;
        let first = len.min(self.data_size - start);
        // SAFETY: both ranges lie inside the data area of the mapping
        // (start < data_size, first ≤ data_size − start, len ≤ data_size).
        unsafe {
            let data = self.base.add(self.data_offset);
            self.scratch
                .extend_from_slice(std::slice::from_raw_parts(data.add(start), first));
            self.scratch
                .extend_from_slice(std::slice::from_raw_parts(data, len - first));
        }
        std::mem::take(&mut self.scratch)
    }

    /// Stops the events (the ring stays readable).
    pub fn disable(&self) {
        // SAFETY: ioctl on our own perf fd (the wakeup event writes into it too).
        unsafe { libc::ioctl(self.switch_fd.as_raw_fd(), IOC_DISABLE, 0) };
        // SAFETY: as above, for the wakeup event.
        unsafe { libc::ioctl(self._wakeup_fd.as_raw_fd(), IOC_DISABLE, 0) };
    }
}

impl Drop for CpuRing {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `open`, used by nobody else.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// A PERF_RECORD_SAMPLE with TID, TIME, CPU and RAW, in that order.
fn parse_sample(rec: &[u8]) -> Option<Sample<'_>> {
    let u32_at = |o: usize| Some(u32::from_ne_bytes(rec.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_ne_bytes(rec.get(o..o + 8)?.try_into().ok()?));
    let tid = u32_at(12)? as i32;
    let time = u64_at(16)?;
    let cpu = u32_at(24)?;
    let raw_len = u32_at(32)? as usize;
    let raw = rec.get(36..36 + raw_len)?;
    Some(Sample {
        tid,
        time,
        cpu,
        raw,
    })
}

/// An integer field of a raw tracepoint record.
pub fn field(raw: &[u8], f: Field) -> i64 {
    let Some(b) = raw.get(f.offset..f.offset + f.size) else {
        return 0;
    };
    match f.size {
        1 => b[0] as i8 as i64,
        2 => i16::from_ne_bytes([b[0], b[1]]) as i64,
        4 => i32::from_ne_bytes(b.try_into().expect("4 bytes")) as i64,
        8 => i64::from_ne_bytes(b.try_into().expect("8 bytes")),
        _ => 0,
    }
}

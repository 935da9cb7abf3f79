mod common;
use std::sync::atomic::Ordering;
use common::{compile, scratch, Shm};
#[test]
fn dbg() {
    let dir = scratch("dbg");
    let exe = compile("bench", &dir);
    let shm = Shm::valid(&dir);
    let mut child = std::process::Command::new(&exe).arg("1000000").env("LD_PRELOAD", common::agent_so()).env("LOCKSTEP_SHM", &shm.path).spawn().unwrap();
    let mut ev = Vec::with_capacity(3_100_000);
    let mut worst = std::time::Duration::ZERO; let mut worst_drain = worst; let mut loops = 0;
    let mut last = std::time::Instant::now();
    loop {
        let t = std::time::Instant::now();
        let n = shm.drain(&mut ev);
        let d = t.elapsed(); if d > worst_drain { worst_drain = d; }
        let gap = t.duration_since(last); if gap > worst { worst = gap; }
        last = std::time::Instant::now();
        loops += 1;
        if child.try_wait().unwrap().is_some() { break; }
        if n == 0 { std::thread::yield_now(); }
    }
    println!("events {} dropped {} loops {loops} worst gap {worst:?} worst drain {worst_drain:?}", ev.len(), shm.header().dropped.load(Ordering::Relaxed));
}

//! Addresses in the agent's relocated copies of the program's code, named
//! by the original instructions they stand for. With memory capture on, a
//! threaded program runs from copies in anonymous memory that no symbol
//! table covers; the agent of each such process leaves the copies' chunk
//! table at `lockstep_agent_abi::COPY_MAP_ADDR`, read here from outside
//! (a replay's divergence and `--stop-at` point at `file:line`).

use crate::mem::Memory;
use lockstep_agent_abi::{COPY_MAP_ADDR, COPY_MAP_MAGIC};

/// `addr` in the original code's terms: an address inside the copies
/// becomes the original instruction whose chunk holds it; any other
/// address (or one the table cannot be read for) is returned as it is.
pub fn original(mem: &dyn Memory, addr: u64) -> u64 {
    let word = |at: u64| mem.read_u64(at);
    let header = (0..5)
        .map(|i| word(COPY_MAP_ADDR + 8 * i))
        .collect::<Option<Vec<u64>>>();
    let Some(h) = header else { return addr };
    let (magic, lo, hi, chunks, len) = (h[0], h[1], h[2], h[3], h[4]);
    if magic != COPY_MAP_MAGIC || addr < lo || addr >= hi || len == 0 {
        return addr;
    }
    // The last chunk starting at or before `addr` (binary search, two
    // words read per probe).
    let pair = |i: u64| Some((word(chunks + 16 * i)?, word(chunks + 16 * i + 8)?));
    let (mut a, mut b) = (0u64, len);
    while b - a > 1 {
        let mid = (a + b) / 2;
        match pair(mid) {
            Some((copy, _)) if copy <= addr => a = mid,
            Some(_) => b = mid,
            None => return addr,
        }
    }
    match pair(a) {
        Some((copy, orig)) if copy <= addr => orig,
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::BufMem;

    fn words(v: &[u64]) -> Vec<u8> {
        v.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn an_address_in_a_copy_is_named_by_its_chunk() {
        let table = 0x5000;
        let mem = BufMem::new()
            .map(
                COPY_MAP_ADDR,
                words(&[COPY_MAP_MAGIC, 0x9000, 0x9100, table, 3]),
            )
            .map(
                table,
                words(&[0x9000, 0x1000, 0x9020, 0x1004, 0x9040, 0x1007]),
            );
        assert_eq!(original(&mem, 0x9000), 0x1000);
        assert_eq!(
            original(&mem, 0x901f),
            0x1000,
            "inside the first chunk's probe"
        );
        assert_eq!(original(&mem, 0x9020), 0x1004);
        assert_eq!(original(&mem, 0x90ff), 0x1007);
        assert_eq!(original(&mem, 0x9100), 0x9100, "past the copies");
        assert_eq!(original(&mem, 0x1234), 0x1234);
        assert_eq!(original(&BufMem::new(), 0x9000), 0x9000, "no table");
    }
}

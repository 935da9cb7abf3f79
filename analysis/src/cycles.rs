//! Elementary cycles of a small directed graph (lock orders, threads waiting
//! for threads, processes waiting for processes): each cycle once, starting
//! at its smallest node, up to a maximum length. The graphs of one run are
//! small, so a plain depth-first search does.

use std::collections::{BTreeMap, BTreeSet};

/// The elementary cycles of the graph `succ` (node → successors) of at most
/// `max_len` nodes, each listed once from its smallest node (a self-loop
/// is a cycle of one node).
pub fn elementary_cycles<T: Ord + Copy>(succ: &BTreeMap<T, Vec<T>>, max_len: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    for &start in succ.keys() {
        let mut path = vec![start];
        walk(start, start, succ, max_len, &mut path, &mut out);
    }
    out
}

fn walk<T: Ord + Copy>(
    start: T,
    at: T,
    succ: &BTreeMap<T, Vec<T>>,
    max_len: usize,
    path: &mut Vec<T>,
    out: &mut Vec<Vec<T>>,
) {
    let next: BTreeSet<T> = succ.get(&at).into_iter().flatten().copied().collect();
    for n in next {
        if n == start {
            out.push(path.clone());
        } else if n > start && !path.contains(&n) && path.len() < max_len {
            path.push(n);
            walk(start, n, succ, max_len, path, out);
            path.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_cycle_once_and_respects_the_length_limit() {
        let g: BTreeMap<i32, Vec<i32>> =
            [(1, vec![2]), (2, vec![1, 3]), (3, vec![1, 3]), (4, vec![4])]
                .into_iter()
                .collect();
        assert_eq!(
            elementary_cycles(&g, 8),
            vec![vec![1, 2], vec![1, 2, 3], vec![3], vec![4]]
        );
        assert_eq!(elementary_cycles(&g, 2), vec![vec![1, 2], vec![3], vec![4]]);
    }
}

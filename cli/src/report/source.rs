//! Source lines for reports: reads each source file once (when it is
//! readable and not huge) and hands out lines and snippets; shortens paths
//! relative to a root directory.

use std::collections::HashMap;
use std::path::Path;

/// Source files larger than this are not read.
const MAX_SOURCE: u64 = 4 << 20;

/// A cache of source files by path.
#[derive(Default)]
pub struct Sources {
    files: HashMap<String, Option<Vec<String>>>,
}

impl Sources {
    fn lines(&mut self, file: &str) -> Option<&Vec<String>> {
        self.files
            .entry(file.to_string())
            .or_insert_with(|| {
                let meta = std::fs::metadata(file).ok()?;
                if !meta.is_file() || meta.len() > MAX_SOURCE {
                    return None;
                }
                let bytes = std::fs::read(file).ok()?;
                Some(
                    String::from_utf8_lossy(&bytes)
                        .lines()
                        .map(|l| l.replace('\t', "    "))
                        .collect(),
                )
            })
            .as_ref()
    }

    /// Line `n` (1-based) of `file`, if the file is readable.
    pub fn line(&mut self, file: &str, n: u32) -> Option<String> {
        let lines = self.lines(file)?;
        lines.get((n as usize).checked_sub(1)?).cloned()
    }

    /// Lines `n - context ..= n + context` of `file` with their numbers.
    pub fn snippet(&mut self, file: &str, n: u32, context: u32) -> Vec<(u32, String)> {
        let Some(lines) = self.lines(file) else {
            return Vec::new();
        };
        let first = n.saturating_sub(context).max(1);
        (first..=n + context)
            .filter_map(|i| lines.get(i as usize - 1).map(|l| (i, l.clone())))
            .collect()
    }
}

/// `file` relative to `root` when it lies below it (`fixtures/a.c`).
pub fn relative_to(file: &str, root: &Path) -> Option<String> {
    let p = Path::new(file);
    let rel = p.strip_prefix(root).ok()?;
    let s = rel.to_str()?;
    (!s.is_empty()).then(|| s.to_string())
}

/// `file` as a reader wants it: relative to the current directory when it
/// lies below it, as recorded otherwise.
pub fn display_path(file: &str) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| relative_to(file, &cwd))
        .unwrap_or_else(|| file.to_string())
}

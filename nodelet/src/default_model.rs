//! The model a node pulls when nothing is assigned to it and the user did not opt out
//! (a pure decision).
//!
//! The point of a default model is that a fresh `herd nodelet` answers its first
//! request without anyone running `ollama pull`, so the model must fit the machine with
//! room to spare: the weights, the KV cache for a modest context, and the rest of the
//! system. The table keys on *total* memory (not free memory, which swings with load)
//! and picks the biggest model of a general chat family whose download is at most
//! about a third of that memory.
//!
//! | total memory    | model          | download size |
//! |-----------------|----------------|---------------|
//! | below 4 GiB     | `qwen2.5:0.5b` | ≈ 0.4 GB      |
//! | 4 GiB to 8 GiB  | `llama3.2:1b`  | ≈ 1.3 GB      |
//! | 8 GiB to 16 GiB | `llama3.2:3b`  | ≈ 2.0 GB      |
//! | 16 GiB and more | `llama3.1:8b`  | ≈ 4.9 GB      |
//!
//! All four are tags of the official Ollama library (`ollama pull <tag>` with no
//! namespace), in its default Q4_K_M quantisation.

const GIB: u64 = 1024 * 1024 * 1024;

/// One row of the default-model table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultModelRow {
    /// The row applies to machines with less total memory than this; `None` for the
    /// last row.
    pub below_bytes: Option<u64>,
    /// An Ollama library tag.
    pub model: &'static str,
    /// Approximate download size, for logs and docs.
    pub download_bytes: u64,
}

/// The table described in the [module docs](self), smallest machines first.
pub const DEFAULT_MODEL_TABLE: &[DefaultModelRow] = &[
    DefaultModelRow {
        below_bytes: Some(4 * GIB),
        model: "qwen2.5:0.5b",
        download_bytes: 398_000_000,
    },
    DefaultModelRow {
        below_bytes: Some(8 * GIB),
        model: "llama3.2:1b",
        download_bytes: 1_300_000_000,
    },
    DefaultModelRow {
        below_bytes: Some(16 * GIB),
        model: "llama3.2:3b",
        download_bytes: 2_000_000_000,
    },
    DefaultModelRow {
        below_bytes: None,
        model: "llama3.1:8b",
        download_bytes: 4_900_000_000,
    },
];

/// The default model for a machine with `total_memory_bytes` of memory.
///
/// A machine that could not measure its memory (0) gets the smallest model.
pub fn default_model(total_memory_bytes: u64) -> &'static str {
    default_model_row(total_memory_bytes).model
}

/// The table row that [`default_model`] picks.
pub fn default_model_row(total_memory_bytes: u64) -> &'static DefaultModelRow {
    let fallback = &DEFAULT_MODEL_TABLE[DEFAULT_MODEL_TABLE.len() - 1];
    DEFAULT_MODEL_TABLE
        .iter()
        .find(|row| {
            row.below_bytes
                .is_some_and(|limit| total_memory_bytes < limit)
        })
        .unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_by_memory_table() {
        let cases = [
            (0, "qwen2.5:0.5b"),
            (512 * 1024 * 1024, "qwen2.5:0.5b"),
            (2 * GIB, "qwen2.5:0.5b"),
            (4 * GIB - 1, "qwen2.5:0.5b"),
            (4 * GIB, "llama3.2:1b"),
            // A "8 GB" machine reports a little under 8 GiB once the kernel keeps its share.
            (7_900_000_000, "llama3.2:1b"),
            (8 * GIB, "llama3.2:3b"),
            (15 * GIB + 900 * 1024 * 1024, "llama3.2:3b"),
            (16 * GIB, "llama3.1:8b"),
            (64 * GIB, "llama3.1:8b"),
            (u64::MAX, "llama3.1:8b"),
        ];
        for (memory, expected) in cases {
            assert_eq!(default_model(memory), expected, "memory = {memory}");
        }
    }

    #[test]
    fn table_is_sorted_and_every_model_fits_a_third_of_its_smallest_machine() {
        // The smallest machine a row serves is the previous row's limit; 2 GiB for the first.
        let mut smallest_machine = 2 * GIB;
        for (i, row) in DEFAULT_MODEL_TABLE.iter().enumerate() {
            assert!(row.download_bytes * 3 <= smallest_machine, "{row:?}");
            match row.below_bytes {
                Some(limit) => {
                    assert!(limit > smallest_machine, "{row:?}");
                    smallest_machine = limit;
                }
                None => assert_eq!(
                    i,
                    DEFAULT_MODEL_TABLE.len() - 1,
                    "only the last row is open"
                ),
            }
            let (name, tag) = row
                .model
                .split_once(':')
                .expect("every default names a tag");
            assert!(
                !name.is_empty() && !tag.is_empty() && !name.contains('/'),
                "{row:?}"
            );
        }
    }
}

//! Where training windows come from: a dataset in memory, streamed from disk, or generated.

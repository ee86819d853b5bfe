//! Which windows a step sees: epoch orders, class×SNR-balanced draws, labelled subsets. Pure
//! index logic over a pool of window indices and the source's labels and SNRs; every function is
//! seeded and gives the same answer for the same arguments, on any machine and thread count.
//!
//! - **SNR cell** ([`snr_cell`]): a window's SNR is assigned to the nearest point of the
//!   dataset's SNR grid (ties go to the earlier grid point); with no grid, to its SNR rounded to
//!   a whole dB. A (class, SNR cell) pair is a *cell*.
//! - **Epoch order** ([`shuffled`]): the pool shuffled by `ChaCha8Rng::seed_from_u64(seed)` on
//!   stream `epoch` — the order the training loop has always used, so a retrained baseline is
//!   identical bit for bit.
//! - **Balanced draw** ([`balanced`]): `count` windows in which every cell present in the pool
//!   appears `⌊count/K⌋` or `⌈count/K⌉` times (K cells; which cells get the extra one is drawn
//!   per epoch). Each cell serves its members in an order shuffled per epoch, cycling; a window
//!   repeats within an epoch only once its cell is exhausted (a cell smaller than its share).
//!   The draw is shuffled as a whole, so a batch mixes cells.
//! - **Labelled subset** ([`labelled_subset`]): exactly `per_cell` windows of every cell, for
//!   "N labelled windows per class and SNR". Each cell's members are shuffled by a stream of
//!   their own (derived from the seed and the cell), so a cell's choice does not depend on the
//!   other cells, and the subset for N is contained in the subset for any larger N.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::TrainError;

/// Index of the grid point nearest `snr_db` (the first of equally near ones); with an empty grid,
/// `snr_db` rounded to a whole dB.
pub fn snr_cell(grid_db: &[f32], snr_db: f32) -> i64 {
    if grid_db.is_empty() {
        return snr_db.round() as i64;
    }
    let (best, _) = grid_db
        .iter()
        .enumerate()
        .fold((0, f32::INFINITY), |acc, (i, g)| {
            let d = (g - snr_db).abs();
            if d < acc.1 { (i, d) } else { acc }
        });
    best as i64
}

/// The SNR a cell stands for, dB: its grid point, or the rounded SNR without a grid.
fn cell_snr_db(grid_db: &[f32], cell: i64) -> f32 {
    if grid_db.is_empty() {
        cell as f32
    } else {
        grid_db[cell as usize]
    }
}

/// `indices` in epoch `epoch`'s order: shuffled by `ChaCha8Rng::seed_from_u64(seed)` with its
/// stream set to `epoch`.
pub fn shuffled(indices: &[u32], seed: u64, epoch: usize) -> Vec<u32> {
    let mut order = indices.to_vec();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64);
    order.shuffle(&mut rng);
    order
}

/// The pool's members grouped by (class, SNR cell), cells in ascending order, members in pool
/// order.
fn cells(
    pool: &[u32],
    labels: &[i64],
    snr_db: &[f32],
    grid_db: &[f32],
) -> Result<BTreeMap<(i64, i64), Vec<u32>>, TrainError> {
    let mut cells: BTreeMap<(i64, i64), Vec<u32>> = BTreeMap::new();
    for &i in pool {
        let (Some(&y), Some(&snr)) = (labels.get(i as usize), snr_db.get(i as usize)) else {
            return Err(TrainError::param(
                "pool",
                format!(
                    "holds window {i}, but only {} labels and {} SNRs are known",
                    labels.len(),
                    snr_db.len()
                ),
            ));
        };
        cells
            .entry((y, snr_cell(grid_db, snr)))
            .or_default()
            .push(i);
    }
    Ok(cells)
}

/// A generator of its own for one purpose, seed, cell and round, so draws for one cell do not
/// depend on any other cell.
fn cell_rng(domain: u64, seed: u64, cell: (i64, i64), round: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&cell.0.to_le_bytes());
    key[16..24].copy_from_slice(&cell.1.to_le_bytes());
    key[24..].copy_from_slice(&domain.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(round);
    rng
}

/// Tags separating the random streams of [`balanced`] and [`labelled_subset`].
const BALANCED_DOMAIN: u64 = 0x6261_6c61_6e63_6564; // "balanced"
const SUBSET_DOMAIN: u64 = 0x6c61_6265_6c6c_6564; // "labelled"

/// `count` windows from `pool` with every (class, SNR cell) present in the pool equally often
/// (±1), in a shuffled order; see the module documentation. Indices outside `labels`/`snr_db`,
/// or an empty pool with `count > 0`, are an error.
pub fn balanced(
    pool: &[u32],
    labels: &[i64],
    snr_db: &[f32],
    grid_db: &[f32],
    count: usize,
    seed: u64,
    epoch: usize,
) -> Result<Vec<u32>, TrainError> {
    let cells = cells(pool, labels, snr_db, grid_db)?;
    if count == 0 {
        return Ok(Vec::new());
    }
    if cells.is_empty() {
        return Err(TrainError::param(
            "pool",
            format!("is empty; {count} balanced windows cannot be drawn from it"),
        ));
    }
    let epoch = epoch as u64;
    let base = count / cells.len();
    let extra = count % cells.len();
    // Which cells get one more this epoch.
    let mut order: Vec<usize> = (0..cells.len()).collect();
    order.shuffle(&mut cell_rng(BALANCED_DOMAIN, seed, (-1, -1), epoch));
    let mut quota = vec![base; cells.len()];
    for &k in &order[..extra] {
        quota[k] += 1;
    }
    let mut out = Vec::with_capacity(count);
    for ((&cell, members), &want) in cells.iter().zip(&quota) {
        let mut rng = cell_rng(BALANCED_DOMAIN, seed, cell, epoch);
        let mut cycle = members.clone();
        let mut left = want;
        while left > 0 {
            cycle.shuffle(&mut rng);
            let take = left.min(cycle.len());
            out.extend_from_slice(&cycle[..take]);
            left -= take;
        }
    }
    let mut rng = cell_rng(BALANCED_DOMAIN, seed, (-2, -2), epoch);
    out.shuffle(&mut rng);
    Ok(out)
}

/// Exactly `per_cell` windows of every (class, SNR cell) in `pool`, chosen by `seed`, in
/// ascending order. A cell with fewer windows is an error naming the class index, the SNR and
/// both counts.
pub fn labelled_subset(
    pool: &[u32],
    labels: &[i64],
    snr_db: &[f32],
    grid_db: &[f32],
    per_cell: usize,
    seed: u64,
) -> Result<Vec<u32>, TrainError> {
    if per_cell == 0 {
        return Err(TrainError::param(
            "labelled-per-cell",
            "is 0; expected at least 1 window per class and SNR",
        ));
    }
    let cells = cells(pool, labels, snr_db, grid_db)?;
    let mut out = Vec::with_capacity(per_cell * cells.len());
    for (&(class, cell), members) in &cells {
        if members.len() < per_cell {
            return Err(TrainError::param(
                "labelled-per-cell",
                format!(
                    "is {per_cell}, but class {class} at {} dB has only {} windows in the pool",
                    cell_snr_db(grid_db, cell),
                    members.len()
                ),
            ));
        }
        let mut members = members.clone();
        // A partial Fisher–Yates: the first `per_cell` places, so larger subsets extend smaller.
        let mut rng = cell_rng(SUBSET_DOMAIN, seed, (class, cell), 0);
        for k in 0..per_cell {
            let j = rng.random_range(k..members.len());
            members.swap(k, j);
        }
        out.extend_from_slice(&members[..per_cell]);
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2 classes × 3 grid points; cell (class, snr) of window i is (i % 2, (i / 2) % 3); SNRs
    /// scatter ±0.4 dB around their grid point.
    fn data(n: usize) -> (Vec<i64>, Vec<f32>, Vec<f32>) {
        let grid = vec![0.0, 10.0, 20.0];
        let labels = (0..n).map(|i| (i % 2) as i64).collect();
        let snr = (0..n)
            .map(|i| grid[(i / 2) % 3] + if i % 3 == 0 { 0.4 } else { -0.3 })
            .collect();
        (labels, snr, grid)
    }

    fn counts(
        picked: &[u32],
        labels: &[i64],
        snr: &[f32],
        grid: &[f32],
    ) -> BTreeMap<(i64, i64), usize> {
        let mut c = BTreeMap::new();
        for &i in picked {
            *c.entry((labels[i as usize], snr_cell(grid, snr[i as usize])))
                .or_default() += 1;
        }
        c
    }

    #[test]
    fn snr_cell_is_the_nearest_grid_point_or_the_rounded_snr() {
        let grid = [-10.0, 0.0, 10.0];
        assert_eq!(snr_cell(&grid, -30.0), 0);
        assert_eq!(snr_cell(&grid, 4.9), 1);
        assert_eq!(snr_cell(&grid, 5.0), 1, "a tie goes to the earlier point");
        assert_eq!(snr_cell(&grid, 5.1), 2);
        assert_eq!(snr_cell(&grid, 99.0), 2);
        assert_eq!(snr_cell(&[], 7.4), 7);
        assert_eq!(snr_cell(&[], -7.6), -8);
    }

    #[test]
    fn the_epoch_shuffle_is_pinned() {
        let pool: Vec<u32> = (0..12).collect();
        // The training loop's order, written out once; a change here changes every baseline.
        assert_eq!(
            shuffled(&pool, 7, 1),
            vec![9, 5, 7, 1, 4, 8, 3, 11, 6, 0, 10, 2]
        );
        assert_eq!(
            shuffled(&pool, 7, 2),
            vec![10, 2, 6, 1, 7, 9, 0, 11, 5, 4, 8, 3]
        );
        // The same as the loop's inline code.
        let mut order = pool.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(123);
        rng.set_stream(3);
        order.shuffle(&mut rng);
        assert_eq!(shuffled(&pool, 123, 3), order);
    }

    #[test]
    fn balanced_draws_every_cell_equally_often() {
        let (labels, snr, grid) = data(600);
        // An unbalanced pool: class 1 at 20 dB keeps only 3 windows, the other cells 100.
        let pool: Vec<u32> = (0..600u32)
            .filter(|&i| {
                let (y, c) = (labels[i as usize], snr_cell(&grid, snr[i as usize]));
                !(y == 1 && c == 2) || i < 18
            })
            .collect();
        for count in [60, 61, 65, 600] {
            let drawn = balanced(&pool, &labels, &snr, &grid, count, 5, 1).unwrap();
            assert_eq!(drawn.len(), count);
            let c = counts(&drawn, &labels, &snr, &grid);
            assert_eq!(c.len(), 6, "every cell appears");
            let (lo, hi) = (c.values().min().unwrap(), c.values().max().unwrap());
            assert!(hi - lo <= 1, "count {count}: {c:?}");
            assert!(drawn.iter().all(|i| pool.contains(i)));
        }
        // A cell with enough members repeats none of them; the 3-window cell cycles through
        // all three before any repeats.
        let drawn = balanced(&pool, &labels, &snr, &grid, 60, 5, 1).unwrap();
        let mut per_window: BTreeMap<u32, usize> = BTreeMap::new();
        for &i in &drawn {
            *per_window.entry(i).or_default() += 1;
        }
        let small = |i: u32| labels[i as usize] == 1 && snr_cell(&grid, snr[i as usize]) == 2;
        assert!(per_window.iter().all(|(&i, &n)| small(i) || n == 1));
        let small_counts: Vec<usize> = per_window
            .iter()
            .filter(|(i, _)| small(**i))
            .map(|(_, n)| *n)
            .collect();
        // 10 draws from 3 windows: three full cycles and one more.
        let mut sorted = small_counts.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![3, 3, 4]);
        let small_total: usize = small_counts.iter().sum();
        assert_eq!(small_total, 10);
    }

    #[test]
    fn balanced_is_repeatable_and_changes_with_epoch_and_seed() {
        let (labels, snr, grid) = data(120);
        let pool: Vec<u32> = (0..120).collect();
        let a = balanced(&pool, &labels, &snr, &grid, 50, 9, 2).unwrap();
        assert_eq!(a, balanced(&pool, &labels, &snr, &grid, 50, 9, 2).unwrap());
        assert_ne!(a, balanced(&pool, &labels, &snr, &grid, 50, 9, 3).unwrap());
        assert_ne!(a, balanced(&pool, &labels, &snr, &grid, 50, 10, 2).unwrap());
        assert!(balanced(&[], &labels, &snr, &grid, 5, 9, 2).is_err());
        assert!(
            balanced(&[500], &labels, &snr, &grid, 5, 9, 2)
                .unwrap_err()
                .to_string()
                .contains("500")
        );
    }

    #[test]
    fn labelled_subset_takes_exactly_n_per_cell() {
        let (labels, snr, grid) = data(600);
        let pool: Vec<u32> = (0..600).collect();
        let five = labelled_subset(&pool, &labels, &snr, &grid, 5, 1).unwrap();
        assert_eq!(five.len(), 30);
        let c = counts(&five, &labels, &snr, &grid);
        assert_eq!(c.len(), 6);
        assert!(c.values().all(|&n| n == 5), "{c:?}");
        assert!(
            five.windows(2).all(|w| w[0] < w[1]),
            "ascending, no repeats"
        );
        // Repeatable; another seed another subset; a smaller N is inside a larger one.
        assert_eq!(
            five,
            labelled_subset(&pool, &labels, &snr, &grid, 5, 1).unwrap()
        );
        assert_ne!(
            five,
            labelled_subset(&pool, &labels, &snr, &grid, 5, 2).unwrap()
        );
        let ten = labelled_subset(&pool, &labels, &snr, &grid, 10, 1).unwrap();
        assert!(five.iter().all(|i| ten.contains(i)));
    }

    #[test]
    fn a_cell_too_small_for_the_subset_is_named() {
        let (labels, snr, grid) = data(600);
        // Class 1 at 20 dB keeps 3 windows.
        let pool: Vec<u32> = (0..600u32)
            .filter(|&i| {
                let (y, c) = (labels[i as usize], snr_cell(&grid, snr[i as usize]));
                !(y == 1 && c == 2) || i < 18
            })
            .collect();
        let err = labelled_subset(&pool, &labels, &snr, &grid, 4, 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("class 1") && err.contains("20 dB") && err.contains("only 3"),
            "{err}"
        );
        assert!(err.contains("is 4"), "{err}");
        assert!(labelled_subset(&pool, &labels, &snr, &grid, 3, 1).is_ok());
        assert!(labelled_subset(&pool, &labels, &snr, &grid, 0, 1).is_err());
    }
}

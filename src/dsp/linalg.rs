//! Small dense complex linear algebra for the DSP module: a Hermitian matrix type and its
//! eigendecomposition by cyclic complex Jacobi rotations (accurate for the ≤ 64×64 covariance
//! matrices of direction finding and subspace SNR estimation).

use num_complex::Complex64;

use crate::dsp::DspError;

/// A square complex matrix, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct CMatrix {
    n: usize,
    data: Vec<Complex64>,
}

impl CMatrix {
    /// The `n × n` zero matrix.
    pub fn zeros(n: usize) -> Self {
        Self {
            n,
            data: vec![Complex64::new(0.0, 0.0); n * n],
        }
    }

    /// A matrix from row-major data of `n × n` entries.
    pub fn from_rows(n: usize, data: Vec<Complex64>) -> Result<Self, DspError> {
        if data.len() != n * n {
            return Err(DspError::param(
                "data",
                format!("{} entries", data.len()),
                format!("n × n = {}", n * n),
            ));
        }
        Ok(Self { n, data })
    }

    /// Side length.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Entry `(r, c)`.
    pub fn get(&self, r: usize, c: usize) -> Complex64 {
        self.data[r * self.n + c]
    }

    /// Sets entry `(r, c)`.
    pub fn set(&mut self, r: usize, c: usize, v: Complex64) {
        self.data[r * self.n + c] = v;
    }

    /// Row-major entries.
    pub fn as_slice(&self) -> &[Complex64] {
        &self.data
    }

    /// Frobenius norm.
    pub fn frobenius(&self) -> f64 {
        self.data.iter().map(|v| v.norm_sqr()).sum::<f64>().sqrt()
    }
}

/// Eigenvalues (descending) and the matching orthonormal eigenvectors of a Hermitian matrix.
#[derive(Debug, Clone)]
pub struct HermitianEigen {
    /// Eigenvalues, largest first.
    pub values: Vec<f64>,
    /// Eigenvectors as the columns of a unitary matrix (column `k` goes with `values[k]`).
    pub vectors: CMatrix,
}

impl HermitianEigen {
    /// Eigenvector `k` as a vector.
    pub fn vector(&self, k: usize) -> Vec<Complex64> {
        (0..self.vectors.n)
            .map(|r| self.vectors.get(r, k))
            .collect()
    }
}

/// Eigendecomposition `A = V·Λ·Vᴴ` of a Hermitian matrix by cyclic Jacobi sweeps.
///
/// Only the Hermitian part `(A + Aᴴ)/2` is used. Sweeps run until the off-diagonal Frobenius
/// norm is below `1e-14·‖A‖_F` (at most 100 sweeps; a few suffice for n ≤ 64).
pub fn hermitian_eigen(a: &CMatrix) -> HermitianEigen {
    let n = a.n;
    let mut m = a.clone();
    for r in 0..n {
        for c in r..n {
            let v = 0.5 * (a.get(r, c) + a.get(c, r).conj());
            m.set(r, c, v);
            m.set(c, r, v.conj());
        }
        let d = m.get(r, r).re;
        m.set(r, r, Complex64::new(d, 0.0));
    }
    let mut v = CMatrix::zeros(n);
    for i in 0..n {
        v.set(i, i, Complex64::new(1.0, 0.0));
    }
    let total = m.frobenius();
    let tol = 1e-14 * total.max(f64::MIN_POSITIVE);
    for _ in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|r| (0..n).filter(move |c| *c != r).map(move |c| (r, c)))
            .map(|(r, c)| m.get(r, c).norm_sqr())
            .sum::<f64>()
            .sqrt();
        if off <= tol {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                rotate(&mut m, &mut v, p, q);
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| m.get(j, j).re.total_cmp(&m.get(i, i).re));
    let values = order.iter().map(|&i| m.get(i, i).re).collect();
    let mut vectors = CMatrix::zeros(n);
    for (k, &i) in order.iter().enumerate() {
        for r in 0..n {
            vectors.set(r, k, v.get(r, i));
        }
    }
    HermitianEigen { values, vectors }
}

/// One Jacobi rotation zeroing `m[p][q]`: `m ← Jᴴ·m·J`, `v ← v·J` with
/// `J = diag(1, e^{−iφ}) · [[c, s], [−s, c]]` on rows/columns `p, q`, where `m[p][q] = r·e^{iφ}`.
fn rotate(m: &mut CMatrix, v: &mut CMatrix, p: usize, q: usize) {
    let apq = m.get(p, q);
    let r = apq.norm();
    if r == 0.0 {
        return;
    }
    let (app, aqq) = (m.get(p, p).re, m.get(q, q).re);
    if r <= 1e-300 || r < 1e-18 * (app.abs() + aqq.abs()) {
        m.set(p, q, Complex64::new(0.0, 0.0));
        m.set(q, p, Complex64::new(0.0, 0.0));
        return;
    }
    let phase = apq / r; // e^{iφ}
    let theta = (aqq - app) / (2.0 * r);
    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
    let t = if theta == 0.0 { 1.0 } else { t };
    let c = 1.0 / (t * t + 1.0).sqrt();
    let s = t * c;
    let e = phase.conj(); // e^{−iφ}
    let (jpp, jpq, jqp, jqq) = (
        Complex64::new(c, 0.0),
        Complex64::new(s, 0.0),
        e * (-s),
        e * c,
    );
    let n = m.n;
    // m ← m·J (columns p, q)
    for k in 0..n {
        let (xp, xq) = (m.get(k, p), m.get(k, q));
        m.set(k, p, xp * jpp + xq * jqp);
        m.set(k, q, xp * jpq + xq * jqq);
    }
    // m ← Jᴴ·m (rows p, q)
    for k in 0..n {
        let (xp, xq) = (m.get(p, k), m.get(q, k));
        m.set(p, k, jpp.conj() * xp + jqp.conj() * xq);
        m.set(q, k, jpq.conj() * xp + jqq.conj() * xq);
    }
    m.set(p, q, Complex64::new(0.0, 0.0));
    m.set(q, p, Complex64::new(0.0, 0.0));
    let (dp, dq) = (m.get(p, p).re, m.get(q, q).re);
    m.set(p, p, Complex64::new(dp, 0.0));
    m.set(q, q, Complex64::new(dq, 0.0));
    for k in 0..n {
        let (xp, xq) = (v.get(k, p), v.get(k, q));
        v.set(k, p, xp * jpp + xq * jqp);
        v.set(k, q, xp * jpq + xq * jqq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_hermitian(n: usize, rng: &mut ChaCha8Rng) -> CMatrix {
        let mut a = CMatrix::zeros(n);
        for r in 0..n {
            for c in r..n {
                let v = if r == c {
                    Complex64::new(rng.random_range(-2.0..2.0), 0.0)
                } else {
                    Complex64::new(rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0))
                };
                a.set(r, c, v);
                a.set(c, r, v.conj());
            }
        }
        a
    }

    /// Reconstruction `‖A − VΛVᴴ‖_F ≤ 1e-10·‖A‖_F` and `‖VᴴV − I‖_F ≤ 1e-10` for n up to 64.
    #[test]
    fn eigen_reconstructs_and_is_unitary() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for n in [1, 2, 3, 4, 8, 17, 64] {
            let a = random_hermitian(n, &mut rng);
            let e = hermitian_eigen(&a);
            assert!(e.values.windows(2).all(|w| w[0] >= w[1]));
            let mut err = 0.0;
            let mut orth = 0.0;
            for r in 0..n {
                for c in 0..n {
                    let rec: Complex64 = (0..n)
                        .map(|k| e.vectors.get(r, k) * e.values[k] * e.vectors.get(c, k).conj())
                        .sum();
                    err += (rec - a.get(r, c)).norm_sqr();
                    let g: Complex64 = (0..n)
                        .map(|k| e.vectors.get(k, r).conj() * e.vectors.get(k, c))
                        .sum();
                    let want = if r == c { 1.0 } else { 0.0 };
                    orth += (g - want).norm_sqr();
                }
            }
            assert!(
                err.sqrt() <= 1e-10 * a.frobenius(),
                "n={n}: reconstruction error {}",
                err.sqrt()
            );
            assert!(
                orth.sqrt() <= 1e-10,
                "n={n}: orthogonality error {}",
                orth.sqrt()
            );
        }
    }

    #[test]
    fn diagonal_is_its_own_decomposition() {
        let mut a = CMatrix::zeros(3);
        for (i, d) in [1.0, 5.0, 3.0].into_iter().enumerate() {
            a.set(i, i, Complex64::new(d, 0.0));
        }
        let e = hermitian_eigen(&a);
        assert_eq!(e.values, vec![5.0, 3.0, 1.0]);
    }
}

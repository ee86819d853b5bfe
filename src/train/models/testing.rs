//! What the architectures' own tests share: raw windows and the model input the daemon's
//! preprocessing makes of them, for checking an exported graph against burn on the same windows.

use burn::tensor::{Device, Distribution, Tensor, TensorData};

use crate::dsp::normalize::Normalization;
use crate::dsp::repr::{ReprWorkspace, Representation};
use crate::iq::C32;

/// `n` one-channel raw windows of `len` samples (Gaussian noise, window `w` scaled by
/// `0.5 + w`) and the model input `[n, 2, len]` made from them by the daemon's preprocessing
/// (unit RMS, planar I/Q).
pub fn windows(n: usize, len: usize, device: &Device) -> (Vec<C32>, Tensor<3>) {
    let noise: Vec<f32> = Tensor::<3>::random([n, 2, len], Distribution::Normal(0.0, 1.0), device)
        .into_data()
        .try_into_vec()
        .expect("f32 noise");
    let raw: Vec<C32> = (0..n * len)
        .map(|k| {
            let (w, t) = (k / len, k % len);
            let scale = 0.5 + w as f32;
            C32::new(
                noise[w * 2 * len + t] * scale,
                noise[(w * 2 + 1) * len + t] * scale,
            )
        })
        .collect();
    let mut ws = ReprWorkspace::new();
    let mut rows = Vec::new();
    for window in raw.chunks_exact(len) {
        let mut window = window.to_vec();
        Normalization::UnitRms.apply(&mut window);
        Representation::Iq
            .write(&window, 1, &mut ws, &mut rows)
            .expect("I/Q rows of a one-channel window");
    }
    let x = Tensor::from_data(TensorData::new(rows, [n, 2, len]), device);
    (raw, x)
}

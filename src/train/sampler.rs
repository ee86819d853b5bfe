//! Which windows a step sees: epoch orders, class×SNR-balanced draws, labelled subsets.

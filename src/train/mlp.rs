//! A multi-layer perceptron with LeakyReLU activations, and its gradient with respect to its input written out as a first-order expression.

//! The training objectives' loss terms and the pieces they share.

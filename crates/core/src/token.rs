//! Warden-minted agent tokens. (Being written.)

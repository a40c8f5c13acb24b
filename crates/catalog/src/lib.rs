//! Pure catalogue rules: DUELL product to desired WooCommerce product
#![forbid(unsafe_code)]

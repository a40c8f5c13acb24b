//! WooCommerce's REST data as typed values: products, variations, categories, orders, notes
//! and the error envelope, tolerant of WooCommerce's type oddities, money in
//! [`rust_decimal::Decimal`].
//!
//! No IO: the pure rules (`duellsync-catalog`, `duellsync-orders`) build and read these types
//! without pulling in an HTTP client; `duellsync-woo` sends and receives them.
#![forbid(unsafe_code)]

pub mod de;
mod error;
mod order;
mod product;
mod tax;

pub use error::{json_u64, ApiError};
pub use order::{
    Address, CouponLine, FeeLine, LineItem, NewFeeLine, NewLineItem, NewOrder, NewShippingLine,
    Order, OrderNote, Refund, ShippingLine,
};
pub use product::{
    Attribute, AttributeWrite, Batch, BatchItem, BatchResult, Category, CategoryCreated, Clearable,
    IdRef, Image, ImageWrite, ManageStock, MetaData, MetaWrite, Page, Product, ProductWrite,
    StockStatus, TermRef, BATCH_LIMIT, MAX_PER_PAGE,
};
pub use tax::TaxRate;

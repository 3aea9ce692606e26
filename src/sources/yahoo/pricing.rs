//! Yahoo's `PricingData` protobuf message (package `quotefeeder` in Yahoo's own JS), as
//! yfinance, finance-query and others decode it. Fields are proto3 `optional`, so an absent
//! `day_volume` or `market_hours` reads as `None` rather than a misleading 0. Field 20
//! (`options_type`) is left out: decoders disagree on its encoding, and unknown fields are
//! skipped.

/// `quote_type` of a keep-alive message.
pub const QUOTE_TYPE_HEARTBEAT: i32 = 7;

#[derive(Clone, PartialEq, prost::Message)]
pub struct PricingData {
    /// The symbol.
    #[prost(string, optional, tag = "1")]
    pub id: Option<String>,
    /// Last price (float32).
    #[prost(float, optional, tag = "2")]
    pub price: Option<f32>,
    /// Event time, ms since the epoch (zigzag-encoded).
    #[prost(sint64, optional, tag = "3")]
    pub time: Option<i64>,
    #[prost(string, optional, tag = "4")]
    pub currency: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub exchange: Option<String>,
    /// EQUITY 8, INDEX 9, CURRENCY 14, ETF 20, CRYPTOCURRENCY 41, HEARTBEAT 7, ...
    #[prost(int32, optional, tag = "6")]
    pub quote_type: Option<i32>,
    /// PRE 0, REGULAR 1, POST 2, EXTENDED 3.
    #[prost(int32, optional, tag = "7")]
    pub market_hours: Option<i32>,
    #[prost(float, optional, tag = "8")]
    pub change_percent: Option<f32>,
    /// Cumulative volume of the trading day.
    #[prost(sint64, optional, tag = "9")]
    pub day_volume: Option<i64>,
    #[prost(float, optional, tag = "10")]
    pub day_high: Option<f32>,
    #[prost(float, optional, tag = "11")]
    pub day_low: Option<f32>,
    #[prost(float, optional, tag = "12")]
    pub change: Option<f32>,
    #[prost(string, optional, tag = "13")]
    pub short_name: Option<String>,
    #[prost(sint64, optional, tag = "14")]
    pub expire_date: Option<i64>,
    #[prost(float, optional, tag = "15")]
    pub open_price: Option<f32>,
    #[prost(float, optional, tag = "16")]
    pub previous_close: Option<f32>,
    #[prost(float, optional, tag = "17")]
    pub strike_price: Option<f32>,
    #[prost(string, optional, tag = "18")]
    pub underlying_symbol: Option<String>,
    #[prost(sint64, optional, tag = "19")]
    pub open_interest: Option<i64>,
    #[prost(sint64, optional, tag = "21")]
    pub mini_option: Option<i64>,
    /// Unreliable (equals the day volume for crypto): never used for volume.
    #[prost(sint64, optional, tag = "22")]
    pub last_size: Option<i64>,
    #[prost(float, optional, tag = "23")]
    pub bid: Option<f32>,
    #[prost(sint64, optional, tag = "24")]
    pub bid_size: Option<i64>,
    #[prost(float, optional, tag = "25")]
    pub ask: Option<f32>,
    #[prost(sint64, optional, tag = "26")]
    pub ask_size: Option<i64>,
    /// Decimals the price is quoted with.
    #[prost(sint64, optional, tag = "27")]
    pub price_hint: Option<i64>,
    #[prost(sint64, optional, tag = "28")]
    pub vol_24hr: Option<i64>,
    #[prost(sint64, optional, tag = "29")]
    pub vol_all_currencies: Option<i64>,
    #[prost(string, optional, tag = "30")]
    pub from_currency: Option<String>,
    #[prost(string, optional, tag = "31")]
    pub last_market: Option<String>,
    #[prost(double, optional, tag = "32")]
    pub circulating_supply: Option<f64>,
    #[prost(double, optional, tag = "33")]
    pub market_cap: Option<f64>,
}

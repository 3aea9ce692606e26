//! Sources: one folder per `type`, each a config struct implementing
//! [`connector::Source`](crate::connector::Source), registered by one line below.

pub mod feed;
pub mod history;

crate::components! { source:
    alphavantage::AlphaVantageConfig,
    file::FileSourceConfig,
    kafka::KafkaSourceConfig,
    store::StoreSourceConfig,
    synthetic::SyntheticConfig,
    twelvedata::TwelveDataConfig,
    twelvedata_history::TwelveDataHistoryConfig,
    yahoo::YahooConfig,
    yahoo_history::YahooHistoryConfig,
}

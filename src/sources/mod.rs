//! Sources: one folder per `type`, each a config struct implementing
//! [`connector::Source`](crate::connector::Source), registered by one line below.

pub mod feed;

crate::components! { source:
    file::FileSourceConfig,
    kafka::KafkaSourceConfig,
    synthetic::SyntheticConfig,
    twelvedata::TwelveDataConfig,
    yahoo::YahooConfig,
}

//! Sources: one folder per `type`, each a config struct implementing
//! [`connector::Source`](crate::connector::Source), registered by one line below.

crate::components! { source:
    file::FileSourceConfig,
    kafka::KafkaSourceConfig,
    synthetic::SyntheticConfig,
}

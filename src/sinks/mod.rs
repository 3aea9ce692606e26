//! Sinks: one folder per `type`, each a config struct implementing
//! [`connector::Sink`](crate::connector::Sink), registered by one line below.

crate::components! { sink:
    file::FileSinkConfig,
    kafka::KafkaSinkConfig,
    null::NullSinkConfig,
    postgres::PostgresSinkConfig,
    sqlite::SqliteSinkConfig,
    stdout::StdoutSinkConfig,
    websocket::WebsocketSinkConfig,
}

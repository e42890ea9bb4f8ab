//! The report and the rejected rows, streamed to the browser in chunks.

use super::*;
use crate::serve::words::reason_words;

impl Campaigns {
    /// The report (same CSV as `report`; `excel`: with a BOM for Excel),
    /// streamed: written on a blocking thread with its own connection, sent
    /// in chunks as it is written, so a million rows never sit in memory.
    /// The campaign's rejected rows in their original columns, streamed
    /// (see `Workspace::write_rejects`).
    pub fn rejects_stream(
        &self,
        name: String,
        locale: &'static str,
    ) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
        let base = self.base.clone();
        tokio::task::spawn_blocking(move || {
            let out = ChunkWriter { tx: tx.clone() };
            let words = |r: &crate::campaign::Reason| reason_words(locale, r);
            if let Err(e) = base.write_rejects(&name, out, &words) {
                tracing::error!("rejected rows of `{name}` cut short: {e:#}");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
    }

    pub fn report_stream(
        &self,
        name: String,
        excel: bool,
    ) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
        let base = self.base.clone();
        let format = if excel {
            ReportFormat::Excel
        } else {
            ReportFormat::Csv
        };
        tokio::task::spawn_blocking(move || {
            let out = ChunkWriter { tx: tx.clone() };
            if let Err(e) = base.write_report(&name, out, format) {
                tracing::error!("report of `{name}` cut short: {e:#}");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
    }
}

/// Sends what is written as body chunks (the report buffers its writes).
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

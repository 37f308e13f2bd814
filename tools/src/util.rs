//! Small async helpers for the glommio executor.

use std::future::Future;
use std::time::Duration;

/// Runs `fut` for at most `dur`; `None` means it timed out (and was dropped).
pub(crate) async fn with_timeout<T>(dur: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(dur).await;
        None
    })
    .await
}

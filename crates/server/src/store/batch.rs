//! Rows that concurrent calls write, written together: one statement (one
//! round trip to the writer, one commit) for all the rows that queued while
//! the previous statement ran, instead of one each. The store writes audit
//! events so: every call that changes something writes one, right before
//! it answers.
//!
//! Whoever finds its row still queued when its turn comes writes every row
//! queued by then (at most [`MAX_ROWS`]), its own among them; the others
//! find theirs written when their turn comes. The statement runs in a task
//! of its own, so a call that is dropped while it writes (its client went
//! away) does not take the rows of the others with it.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// The most rows one statement writes.
pub const MAX_ROWS: usize = 64;

/// A queue of rows of type `T`, each write of which ends in an `R` that
/// every row written by it gets.
pub struct Batch<T, R> {
    queue: Mutex<Vec<(T, oneshot::Sender<R>)>>,
    /// Held by whoever writes; waited for in order.
    turn: tokio::sync::Mutex<()>,
}

impl<T, R> Default for Batch<T, R> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Vec::new()),
            turn: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T, R> std::fmt::Debug for Batch<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").finish_non_exhaustive()
    }
}

/// A row's write ended without an outcome: the task that wrote it failed.
#[derive(Debug, thiserror::Error)]
#[error("the write of a batch of rows ended without an outcome")]
pub struct Interrupted;

impl<T: Send + 'static, R: Clone + Send + 'static> Batch<T, R> {
    /// Writes `row` with the rows queued beside it; `write` writes a batch
    /// (its own row may be in one written by another call's `write`).
    pub async fn write<F, Fut>(&self, row: T, write: F) -> Result<R, Interrupted>
    where
        F: Fn(Vec<T>) -> Fut,
        Fut: Future<Output = R> + Send + 'static,
    {
        let (done, mut outcome) = oneshot::channel();
        self.lock_queue().push((row, done));
        loop {
            let _turn = self.turn.lock().await;
            match outcome.try_recv() {
                Ok(result) => return Ok(result),
                Err(oneshot::error::TryRecvError::Closed) => return Err(Interrupted),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let (rows, waiting): (Vec<T>, Vec<oneshot::Sender<R>>) = {
                let mut queue = self.lock_queue();
                let n = queue.len().min(MAX_ROWS);
                queue.drain(..n).unzip()
            };
            // Its own task: it runs to its end even if this call is dropped.
            let result = tokio::spawn(write(rows)).await.map_err(|_| Interrupted)?;
            for done in waiting {
                let _ = done.send(result.clone());
            }
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<(T, oneshot::Sender<R>)>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// A writer that takes a while, as a database round trip does, and
    /// notes every batch it wrote.
    fn slow_writer(
        written: Arc<Mutex<Vec<Vec<u32>>>>,
    ) -> impl Fn(Vec<u32>) -> std::pin::Pin<Box<dyn Future<Output = usize> + Send>> {
        move |rows| {
            let written = written.clone();
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let n = rows.len();
                written.lock().unwrap().push(rows);
                n
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_written_at_once_share_statements_and_each_is_written_once() {
        let batch = Arc::new(Batch::<u32, usize>::default());
        let written = Arc::new(Mutex::new(Vec::new()));
        let calls: Vec<_> = (0..200)
            .map(|i| {
                let (batch, written) = (batch.clone(), written.clone());
                tokio::spawn(async move { batch.write(i, slow_writer(written)).await })
            })
            .collect();
        for call in calls {
            let rows_in_its_batch = call.await.unwrap().unwrap();
            assert!((1..=MAX_ROWS).contains(&rows_in_its_batch));
        }
        let batches = written.lock().unwrap().clone();
        let mut rows: Vec<u32> = batches.iter().flatten().copied().collect();
        rows.sort_unstable();
        assert_eq!(rows, (0..200).collect::<Vec<_>>(), "each row once");
        assert!(
            batches.len() < 200,
            "{} statements for 200 rows",
            batches.len()
        );
        assert!(batches.iter().all(|b| b.len() <= MAX_ROWS));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_dropped_midway_takes_no_other_row_with_it() {
        let batch = Arc::new(Batch::<u32, usize>::default());
        let written = Arc::new(Mutex::new(Vec::new()));
        // The first call writes (a slow statement) and is dropped midway;
        // the rows queued meanwhile are still written, once.
        let first = {
            let (batch, written) = (batch.clone(), written.clone());
            tokio::spawn(async move { batch.write(0, slow_writer(written)).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        let others: Vec<_> = (1..10)
            .map(|i| {
                let (batch, written) = (batch.clone(), written.clone());
                tokio::spawn(async move { batch.write(i, slow_writer(written)).await })
            })
            .collect();
        first.abort();
        for call in others {
            call.await.unwrap().unwrap();
        }
        // The dropped call's statement runs on by itself.
        for _ in 0..500 {
            if written.lock().unwrap().iter().flatten().count() == 10 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut rows: Vec<u32> = written.lock().unwrap().iter().flatten().copied().collect();
        rows.sort_unstable();
        assert_eq!(rows, (0..10).collect::<Vec<_>>());
    }
}

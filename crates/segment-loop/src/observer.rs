//! What an observer implements, and its type-erased form the loop holds.

use crate::{LoopSegment, PassEnd, PassStart, RangeInfo};
use std::any::Any;
use std::sync::Arc;

/// One consumer of the loop's passes.
///
/// Per pass: `start` once, `fork` one partial per range, each partial `process`es its
/// range's batches (ranges run in parallel, so partials keep their own state), `join`
/// merges each partial back in range order, and `finish` ends the pass. An error in
/// any call skips this observer's remaining calls for the pass, `finish` included.
#[async_trait::async_trait]
pub trait Observer: Send + Sync + 'static {
    /// The partial state one range builds.
    type Partial: Partial;

    /// Its name, in status and logs.
    fn name(&self) -> &'static str;

    /// A pass begins at `pass.revision`.
    async fn start(&self, pass: &PassStart) -> Result<(), String>;

    /// A partial for `range`.
    async fn fork(&self, range: &RangeInfo) -> Result<Self::Partial, String>;

    /// Merges a finished range's partial.
    async fn join(&self, partial: Self::Partial) -> Result<(), String>;

    /// The pass ended; `pass.complete` says whether every segment was seen.
    async fn finish(&self, pass: &PassEnd) -> Result<(), String>;
}

/// One range's share of an observer's work.
#[async_trait::async_trait]
pub trait Partial: Send + 'static {
    /// Takes the next batch of the range's segments, in key order.
    async fn process(&mut self, segments: &[LoopSegment]) -> Result<(), String>;
}

/// A partial whose observer type is forgotten.
#[async_trait::async_trait]
pub(crate) trait DynPartial: Send {
    async fn process(&mut self, segments: &[LoopSegment]) -> Result<(), String>;
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

#[async_trait::async_trait]
impl<P: Partial> DynPartial for P {
    async fn process(&mut self, segments: &[LoopSegment]) -> Result<(), String> {
        Partial::process(self, segments).await
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// An observer whose partial type is forgotten.
#[async_trait::async_trait]
pub(crate) trait DynObserver: Send + Sync {
    fn name(&self) -> &'static str;
    async fn start(&self, pass: &PassStart) -> Result<(), String>;
    async fn fork(&self, range: &RangeInfo) -> Result<Box<dyn DynPartial>, String>;
    async fn join(&self, partial: Box<dyn DynPartial>) -> Result<(), String>;
    async fn finish(&self, pass: &PassEnd) -> Result<(), String>;
}

struct Erased<O>(Arc<O>);

#[async_trait::async_trait]
impl<O: Observer> DynObserver for Erased<O> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    async fn start(&self, pass: &PassStart) -> Result<(), String> {
        self.0.start(pass).await
    }

    async fn fork(&self, range: &RangeInfo) -> Result<Box<dyn DynPartial>, String> {
        Ok(Box::new(self.0.fork(range).await?))
    }

    async fn join(&self, partial: Box<dyn DynPartial>) -> Result<(), String> {
        // The loop hands an observer only the partials it forked itself.
        let partial = partial
            .into_any()
            .downcast::<O::Partial>()
            .map_err(|_| "a partial of another observer".to_string())?;
        self.0.join(*partial).await
    }

    async fn finish(&self, pass: &PassEnd) -> Result<(), String> {
        self.0.finish(pass).await
    }
}

/// The loop's handle on `observer`.
pub(crate) fn erase<O: Observer>(observer: Arc<O>) -> Arc<dyn DynObserver> {
    Arc::new(Erased(observer))
}

use super::*;

#[tokio::test(start_paused = true)]
async fn a_panicking_task_is_counted_and_restarted() {
    let metrics = Arc::new(Metrics::default());
    let (_quit_tx, quit) = watch::channel(false);
    let starts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let n = starts.clone();
    supervise("worker", metrics.clone(), quit, move || {
        let n = n.clone();
        async move {
            if n.fetch_add(1, Ordering::SeqCst) < 2 {
                panic!("boom");
            }
        }
    })
    .await;
    assert_eq!(
        starts.load(Ordering::SeqCst),
        3,
        "restarted after each panic"
    );
    let text = metrics.render_for_tests();
    assert!(
        text.contains("pbx_onboard_task_panics_total{task=\"worker\"} 2"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_that_panics_while_stopping_is_not_restarted() {
    let metrics = Arc::new(Metrics::default());
    let (quit_tx, quit) = watch::channel(false);
    let _ = quit_tx.send(true);
    let starts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let n = starts.clone();
    supervise("worker", metrics, quit, move || {
        n.fetch_add(1, Ordering::SeqCst);
        async { panic!("boom") }
    })
    .await;
    assert_eq!(starts.load(Ordering::SeqCst), 1);
}

//! The store on both engines: migrations apply (and re-apply as a no-op), the
//! domain setup is idempotent, and the sync lock excludes a second holder.

use crate::common::{Backend, Env, LIMITS_OPEN};
use pbx_onboard::config::Config;
use pbx_onboard::store::Store;
use std::time::Duration;

crate::both_stores!(
    migrations_and_domain_setup_are_idempotent,
    sync_lock_is_exclusive_until_released
);

async fn open(env: &Env) -> (Config, Store) {
    let cfg = Config::load(&env.config).expect("config");
    let store = Store::connect(&cfg.store).await.expect("connect");
    (cfg, store)
}

async fn migrations_and_domain_setup_are_idempotent(b: Backend) {
    let env = Env::new(b, LIMITS_OPEN).await;
    let (cfg, store) = open(&env).await;
    let d1 = store
        .ensure_domain(&cfg.domains[0])
        .await
        .expect("ensure domain");
    store.close().await;
    let (cfg, store) = open(&env).await;
    let d2 = store
        .ensure_domain(&cfg.domains[0])
        .await
        .expect("ensure domain again");
    assert_eq!(d1, d2);
    assert_eq!(d2.revision, 0);
    let found = store.find_domain("acme.example").await.expect("find");
    assert_eq!(found, Some(d2));
    assert!(store.load_users(d2.id).await.expect("load").is_empty());
    store.close().await;
}

async fn sync_lock_is_exclusive_until_released(b: Backend) {
    let env = Env::new(b, LIMITS_OPEN).await;
    let (_cfg, store) = open(&env).await;
    let (_cfg2, other) = open(&env).await;
    let lock = store
        .lock_domain("acme.example", Duration::from_secs(1))
        .await
        .expect("first lock");
    let second = other
        .lock_domain("acme.example", Duration::from_millis(300))
        .await;
    assert!(second.is_err(), "a second holder must wait");
    // Another domain is independent.
    let beta = other
        .lock_domain("beta.example", Duration::from_millis(300))
        .await
        .expect("other domain");
    beta.release().await;
    lock.release().await;
    let again = other
        .lock_domain("acme.example", Duration::from_secs(2))
        .await
        .expect("after release");
    again.release().await;
    store.close().await;
    other.close().await;
}

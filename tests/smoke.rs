mod common;
use common::*;

#[test]
fn a_client_receives_ticks_with_increasing_seq() {
    let server = start(test_config(2));
    let mut ws = connect(server.local_addr(), "/ws?topics=ticks");
    let welcome = next_json(&mut ws);
    assert_eq!(welcome["type"], "welcome");
    let mut last = 0;
    for _ in 0..20 {
        let m = next_data(&mut ws);
        assert_eq!(m["topic"], "ticks");
        let seq = m["seq"].as_u64().unwrap();
        assert!(seq > last);
        last = seq;
    }
    println!("{}", http_get(server.local_addr(), "/metrics").1);
    server.shutdown();
}

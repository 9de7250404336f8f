//! The MCP pieces the MCP tests share: a registry MCP server behind Portcullis.

/// A registry MCP server (`@modelcontextprotocol/server-everything`, Streamable HTTP) on a
/// loopback port, as pinned in tests/mcp.
pub struct Everything {
    pub port: u16,
    _child: tokio::process::Child,
}

pub async fn server_everything() -> Everything {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/mcp");
    let script =
        dir.join("node_modules/@modelcontextprotocol/server-everything/dist/streamableHttp.js");
    assert!(
        script.exists(),
        "{}: scripts/install-test-deps installs the MCP packages",
        script.display()
    );
    let port = super::idp::free_port();
    let child = tokio::process::Command::new("node")
        .arg(&script)
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Everything {
                port,
                _child: child,
            };
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("server-everything did not start on port {port}");
}

#[derive(clap::Args, Debug, Clone)]
pub struct FsyncTestArgs {}
pub fn run(_a: FsyncTestArgs) -> anyhow::Result<()> { anyhow::bail!("todo") }

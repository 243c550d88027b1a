#[derive(clap::Args, Debug, Clone)]
pub struct MaxbufferStressArgs {}
pub fn run(_a: MaxbufferStressArgs) -> anyhow::Result<()> { anyhow::bail!("todo") }

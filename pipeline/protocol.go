package pipeline

// PasteDeploy protocol names (entry point groups).
const (
	protoApp       = "paste.app_factory"
	protoComposite = "paste.composite_factory"
	protoComposit  = "paste.composit_factory"
	protoFilter    = "paste.filter_factory"
	protoFilterApp = "paste.filter_app_factory"
	protoServer    = "paste.server_factory"
	protoServerRun = "paste.server_runner"
)

// Command argocd is Argo CD's multi-call binary built from the Go module proxy, for the Argo CD tests and
// `make argocd-local`. github.com/argoproj/argo-cd/v3 carries replace directives, so `go install` of it
// fails; this wrapper requires it like any library and repeats its replaces (go.mod).
// The body mirrors argo-cd's cmd/main.go, limited to the parts a sync needs: the process name or
// ARGOCD_BINARY_NAME picks the application-controller, the repo-server, the applicationset-controller,
// the git askpass helper the repo-server runs, or (any other name) the CLI, `argocd admin` included.
// The API server, Dex, notifications, CMP and commit servers are left out (no UI, SSO or hydrator here).
// Pinned in the Makefile (ARGOCD_VERSION) and in go.mod here: bump both (`make argocd` checks they agree).
package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	appcontroller "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"
	applicationset "github.com/argoproj/argo-cd/v3/cmd/argocd-applicationset-controller/commands"
	gitaskpass "github.com/argoproj/argo-cd/v3/cmd/argocd-git-ask-pass/commands"
	reposerver "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"
	cli "github.com/argoproj/argo-cd/v3/cmd/argocd/commands"
	"github.com/argoproj/argo-cd/v3/common"
	"github.com/argoproj/argo-cd/v3/util/grpc"
	"github.com/argoproj/argo-cd/v3/util/log"
)

func init() {
	klog.SetLogger(log.NewLogrusLogger(log.NewWithCurrentConfig()))
}

func main() {
	grpc.DisableSRVLookups()

	binaryName := filepath.Base(os.Args[0])
	if val := os.Getenv("ARGOCD_BINARY_NAME"); val != "" {
		binaryName = val
	}

	var command *cobra.Command
	isCLI := false
	switch binaryName {
	case common.CommandApplicationController:
		command = appcontroller.NewCommand()
	case common.CommandRepoServer:
		command = reposerver.NewCommand()
	case common.CommandApplicationSetController:
		command = applicationset.NewCommand()
	case common.CommandGitAskPass:
		command = gitaskpass.NewCommand()
		isCLI = true
	default:
		command = cli.NewCommand()
		isCLI = true
	}
	if isCLI {
		command.SilenceErrors = true
		command.SilenceUsage = true
	}

	if err := command.Execute(); err != nil {
		errMsg, pluginErr := cli.NewDefaultPluginHandler().HandleCommandExecutionError(err, isCLI, os.Args)
		if pluginErr != nil {
			os.Stdout.WriteString(errMsg)
			var exitErr *exec.ExitError
			if errors.As(pluginErr, &exitErr) {
				os.Exit(exitErr.ExitCode())
			}
			os.Exit(1)
		}
	}
}

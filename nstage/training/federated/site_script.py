"""The site's entry point in the NVFlare job: NVFlare's ClientAPIExecutor runs this file on each site (in process);
the work is nstage's own code, installed on the site (`make setup-federated`, docs/federated.md)."""

from nstage.training.federated.flare_site import main

if __name__ == "__main__":
    main()

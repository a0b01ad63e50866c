# How the function reaches Cloud SQL (var.sql_connectivity):
#   public:  the instance's public IP, through the connector's IAM-authorised mTLS (no VPC).
#   private: the instance's private IP on a VPC peered with Google's service producer network
#            (private services access: a reserved range and a service networking connection).
#   psc:     a Private Service Connect endpoint (an internal address and a forwarding rule to the
#            instance's service attachment) with a private DNS record for the instance's DNS name,
#            which is what the connector dials for ip_type PSC.
# For private and psc the function sends traffic for private ranges into the VPC through Direct VPC
# egress (function.tf); Google APIs (BigQuery, Pub/Sub, Secret Manager, the SQL Admin API) keep the
# default path. The code dials the matching address: DB_IP_TYPE = sql_connectivity.
#
# Terraform creates the network and the egress subnet unless vpc_network / vpc_subnetwork name
# existing ones, and creates the instance-side pieces (reserved range and peering, or PSC endpoint
# and DNS) only with the instance itself (create_sql_instance = true). An existing private instance
# brings its own; terraform/README.md "Private connectivity" lists what it needs.

locals {
  private_connectivity = var.sql_connectivity != "public"

  create_network    = local.private_connectivity && var.vpc_network == null
  create_subnetwork = local.private_connectivity && var.vpc_subnetwork == null

  vpc_network    = local.create_network ? try(google_compute_network.sync[0].id, null) : var.vpc_network
  vpc_subnetwork = local.create_subnetwork ? try(google_compute_subnetwork.egress[0].id, null) : var.vpc_subnetwork

  # Private services access is per network: an existing range (private_services_range) means the
  # network already has its connection to servicenetworking.googleapis.com.
  create_private_services_access = var.create_sql_instance && var.sql_connectivity == "private" && var.private_services_range == null
  private_services_range         = local.create_private_services_access ? try(google_compute_global_address.private_services[0].name, null) : var.private_services_range

  create_psc_endpoint = var.create_sql_instance && var.sql_connectivity == "psc"
}

resource "google_compute_network" "sync" {
  count = local.create_network ? 1 : 0

  name                    = "${var.name}-vpc"
  description             = "VPC through which ${var.name} reaches its Cloud SQL instance privately (Direct VPC egress)."
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"
}

# Nothing connects into this network: the function only dials out (to the instance's private address
# or PSC endpoint). The implied rules already deny ingress; this one says so, and logs what tries.
resource "google_compute_firewall" "deny_ingress" {
  count = local.create_network ? 1 : 0

  name        = "${var.name}-deny-ingress"
  description = "Nothing connects into ${var.name}'s VPC; the function only connects out."
  network     = google_compute_network.sync[0].id
  direction   = "INGRESS"
  priority    = 65000

  source_ranges = ["0.0.0.0/0"]
  deny {
    protocol = "all"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_subnetwork" "egress" {
  count = local.create_subnetwork ? 1 : 0

  name          = "${var.name}-egress"
  description   = "Addresses of ${var.name}'s instances on Direct VPC egress."
  region        = var.region
  network       = local.vpc_network
  ip_cidr_range = var.egress_subnet_cidr
  # Lets the instances reach Google APIs even when traffic to them is routed into the VPC.
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# --- private: private services access ---------------------------------------------

resource "google_compute_global_address" "private_services" {
  count = local.create_private_services_access ? 1 : 0

  name          = "${var.name}-private-services"
  description   = "Range Google's service producer network (Cloud SQL) takes its private addresses from."
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = var.private_services_prefix_length
  network       = local.vpc_network
}

resource "google_service_networking_connection" "private_services" {
  count = local.create_private_services_access ? 1 : 0

  network                 = local.vpc_network
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services[0].name]
  # The peering serves every private service in the network, and Google refuses to delete it while
  # an instance still uses it: a destroy leaves it, as the database is left (sql.tf).
  deletion_policy = "ABANDON"
}

# --- psc: endpoint and DNS ----------------------------------------------------------

resource "google_compute_address" "psc" {
  count = local.create_psc_endpoint ? 1 : 0

  name         = "${var.name}-sql-psc"
  description  = "Private Service Connect endpoint of ${var.sql_instance_name}."
  region       = var.region
  subnetwork   = local.vpc_subnetwork
  address_type = "INTERNAL"
}

resource "google_compute_forwarding_rule" "psc" {
  count = local.create_psc_endpoint ? 1 : 0

  name        = "${var.name}-sql-psc"
  description = "Forwards the endpoint address to the Cloud SQL instance's service attachment."
  region      = var.region
  network     = local.vpc_network
  ip_address  = google_compute_address.psc[0].id
  target      = google_sql_database_instance.created[0].psc_service_attachment_link
  # Empty for an endpoint to a published service (the provider documents "" for PSC).
  load_balancing_scheme = ""
}

# The connector dials the instance's DNS name for ip_type PSC, and Cloud SQL creates no record for
# a manually created endpoint: a private zone for exactly that name, visible in this network.
resource "google_dns_managed_zone" "psc" {
  count = local.create_psc_endpoint ? 1 : 0
  #checkov:skip=CKV_GCP_16:DNSSEC applies to public zones; this zone is private to one VPC.

  name        = "${var.name}-sql-psc"
  description = "Resolves ${var.sql_instance_name}'s Private Service Connect DNS name in ${var.name}'s VPC."
  dns_name    = google_sql_database_instance.created[0].dns_name
  visibility  = "private"

  private_visibility_config {
    networks {
      network_url = local.vpc_network
    }
  }
}

resource "google_dns_record_set" "psc" {
  count = local.create_psc_endpoint ? 1 : 0

  managed_zone = google_dns_managed_zone.psc[0].name
  name         = google_sql_database_instance.created[0].dns_name
  type         = "A"
  ttl          = 300
  rrdatas      = [google_compute_address.psc[0].address]
}

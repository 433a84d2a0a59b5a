// Package types keeps the Volcano API types controller-gen reads in this module's build list.
package types

import _ "volcano.sh/apis/pkg/apis/batch/v1alpha1"
